"""Route53 failover rules: every failover record has a health check and follows the stack's role.

No public policy set has these; they are what keeps the two stacks from both claiming PRIMARY (split brain at the
DNS layer) or routing to a region nobody checks.
"""

from __future__ import annotations

from collections.abc import Iterator

from drtopo.settings import Role, Settings
from policies import resource_types as types
from policies.model import Resource, Violation, as_list, violation
from policies.registry import resource_rule

RECORDS = (types.ROUTE53_RECORD,)


def failover_type(record: Resource) -> str | None:
    """PRIMARY / SECONDARY for a failover record, None for any other record."""
    policies = as_list(record.get("failoverRoutingPolicies"))
    return str(policies[0].get("type")) if policies and isinstance(policies[0], dict) else None


@resource_rule("route53-failover-health-check", "Each failover record is tied to a health check.", RECORDS)
def failover_record_has_health_check(record: Resource, settings: Settings) -> Iterator[Violation]:
    if failover_type(record) is None:
        return
    if not record.get("healthCheckId"):
        yield violation(record, "healthCheckId", None, "the id of this region's health check")
    if not record.get("setIdentifier"):
        yield violation(record, "setIdentifier", None, "a set identifier (the region)")


@resource_rule("route53-standby-not-primary", "A standby stack never declares a PRIMARY failover record.", RECORDS)
def standby_declares_no_primary(record: Resource, settings: Settings) -> Iterator[Violation]:
    if settings.role is Role.STANDBY and failover_type(record) == "PRIMARY":
        yield violation(
            record,
            "failoverRoutingPolicies[0].type",
            "PRIMARY",
            "'SECONDARY'",
            f"stack {settings.stack} has role standby; two PRIMARY records split the traffic",
        )


@resource_rule("route53-failover-follows-role", "A failover record's PRIMARY/SECONDARY follows the role.", RECORDS)
def failover_follows_role(record: Resource, settings: Settings) -> Iterator[Violation]:
    found = failover_type(record)
    if found is not None and found != settings.role.failover:
        yield violation(
            record,
            "failoverRoutingPolicies[0].type",
            found,
            repr(settings.role.failover),
            f"stack {settings.stack} has role {settings.role.value}",
        )


@resource_rule(
    "route53-health-check-target",
    "The health check probes this region's endpoint at the service's health path over HTTP(S).",
    (types.ROUTE53_HEALTH_CHECK,),
)
def health_check_target(check: Resource, settings: Settings) -> Iterator[Violation]:
    dns = settings.dns
    expected = {"type": dns.health_check_type, "fqdn": dns.endpoint, "resourcePath": dns.health_check_path}
    for prop, required in expected.items():
        if check.get(prop) != required:
            yield violation(check, prop, check.get(prop), repr(required), "a check on anything else fails over blind")
