"""Route53 failover rules: every failover record has a health check and follows the stack's role, and its health
can be flipped through the data plane from the peer's region.

No public policy set has these; they are what keeps the two stacks from both claiming PRIMARY (split brain at the
DNS layer), routing to a region nobody checks, or failing over only through Route53's control plane (us-east-1).
"""

from __future__ import annotations

from collections.abc import Iterator

from drtopo import naming
from drtopo.settings import Role, Settings
from policies import resource_types as types
from policies.model import UNKNOWN, Resource, Violation, as_list, violation
from policies.registry import resource_rule, stack_rule
from policies.view import StackView

RECORDS = (types.ROUTE53_RECORD,)
# Health checks that probe an endpoint (the others watch an alarm or other checks).
ENDPOINT_CHECK_TYPES = ("HTTP", "HTTPS", "HTTP_STR_MATCH", "HTTPS_STR_MATCH", "TCP")


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
    if check.get("type") not in ENDPOINT_CHECK_TYPES and check.get("type") is not None:
        return
    dns = settings.dns
    expected = {"type": dns.health_check_type, "fqdn": dns.endpoint, "resourcePath": dns.health_check_path}
    for prop, required in expected.items():
        if check.get(prop) != required:
            yield violation(check, prop, check.get(prop), repr(required), "a check on anything else fails over blind")


def _refers_to(view: StackView, holder: Resource, prop: str, target: Resource) -> bool:
    """Whether `holder.prop` (a value or a list) names `target` by id, or was computed from its URN."""
    value = holder.inputs.get(prop)
    values = value if isinstance(value, list) else [value]
    known = {target.id, f"{target.name}-id"} - {"", None}
    return any(v in known for v in values if v is not UNKNOWN) or target.urn in holder.dependencies.get(prop, ())


@stack_rule(
    "route53-failover-through-data-plane",
    "Each failover record's health is a calculated check (AND) of this region's endpoint check and a check on the "
    "peer's takeover alarm in the peer's region, so the peer takes over without Route53's control plane.",
)
def failover_through_data_plane(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    checks = view.of_type(types.ROUTE53_HEALTH_CHECK)
    alarm = naming.takeover_alarm_name(settings.peer_region)
    signals = [
        c
        for c in checks
        if c.get("type") == "CLOUDWATCH_METRIC"
        and c.get("cloudwatchAlarmName") == alarm
        and c.get("cloudwatchAlarmRegion") == settings.peer_region
    ]
    own_alarms = [
        a for a in view.of_type(types.METRIC_ALARM) if a.get("name") == naming.takeover_alarm_name(settings.region)
    ]
    if not own_alarms:
        yield violation(
            None,
            "takeover alarm",
            None,
            f"a CloudWatch alarm {naming.takeover_alarm_name(settings.region)!r} in {settings.region}",
            "what promote flips when this stack takes over",
        )
    for record in view.of_type(types.ROUTE53_RECORD):
        if failover_type(record) is None:
            continue
        if not signals:
            yield violation(
                record,
                "healthCheckId",
                record.get("healthCheckId"),
                f"a calculated check that includes a CLOUDWATCH_METRIC check on {alarm!r} in {settings.peer_region}",
                "otherwise only a record change (Route53's control plane) can fail over",
            )
            continue
        calculated = [
            c for c in checks if c.get("type") == "CALCULATED" and _refers_to(view, record, "healthCheckId", c)
        ]
        good = [
            c
            for c in calculated
            if any(_refers_to(view, c, "childHealthchecks", s) for s in signals)
            and c.get("childHealthThreshold") == len(as_list(c.get("childHealthchecks")))
        ]
        if not good:
            yield violation(
                record,
                "healthCheckId",
                record.get("healthCheckId"),
                f"a calculated check requiring all children, one of them the check on {alarm!r}",
                "the peer's takeover must make this record unhealthy",
            )
        for signal in signals:
            if signal.get("insufficientDataHealthStatus") != "Healthy":
                yield violation(
                    signal,
                    "insufficientDataHealthStatus",
                    signal.get("insufficientDataHealthStatus"),
                    "'Healthy'",
                    "a peer that never took over has no alarm data",
                )
