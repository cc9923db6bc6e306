"""The pulumi-policy wrappers over the plain rules, for `pulumi preview --policy-pack policies/` on a real account.

Importing this module starts nothing (pulumi-policy's `PolicyPack` starts a server and blocks, so only
`policies/__main__.py` calls it). Each resource rule becomes a `ResourceValidationPolicy`, each stack rule a
`StackValidationPolicy`. The stack's settings are read from `Pulumi.<stack>.yaml`, the stack named in the URNs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy import proxy as unknowns
from pulumi_policy.secret import Secret

import policies.engine  # noqa: F401  (registers the rules)
from drtopo.settings import Settings, load_settings
from policies.engine import run_rule
from policies.model import UNKNOWN, Enforcement, Resource
from policies.registry import RULES, Rule
from policies.view import StackView

LEVELS = {Enforcement.MANDATORY: EnforcementLevel.MANDATORY, Enforcement.ADVISORY: EnforcementLevel.ADVISORY}
_UNKNOWN_SENTINELS = {
    unknowns.UNKNOWN_BOOLEAN_VALUE,
    unknowns.UNKNOWN_NUMBER_VALUE,
    unknowns.UNKNOWN_STRING_VALUE,
    unknowns.UNKNOWN_ARRAY_VALUE,
    unknowns.UNKNOWN_ASSET_VALUE,
    unknowns.UNKNOWN_ARCHIVE_VALUE,
    unknowns.UNKNOWN_OBJECT_VALUE,
}


def plain(value: Any) -> Any:
    """pulumi-policy's proxied props as plain dicts and lists, unknowns as `UNKNOWN`, secrets unwrapped."""
    if isinstance(value, Secret):
        return plain(value.value)
    if isinstance(value, str):
        return UNKNOWN if value in _UNKNOWN_SENTINELS else value
    if isinstance(value, Mapping):
        target = value["__target"] if _is_proxy(value) else value
        return {k: plain(target[k]) for k in target}
    if isinstance(value, Sequence):
        target = value["__target"] if _is_proxy(value) else value  # type: ignore[call-overload]
        return [plain(v) for v in target]
    return value


def _is_proxy(value: Any) -> bool:
    return type(value).__name__ in ("_DictProxy", "_ListProxy", "_DictSecretsProxy", "_ListSecretsProxy")


def stack_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> `<stack>`."""
    parts = urn.split(":", 2)
    if len(parts) < 3 or parts[:2] != ["urn", "pulumi"] or "::" not in parts[2]:
        raise ValueError(f"urn {urn!r} is not a Pulumi URN; expected urn:pulumi:<stack>::<project>::...")
    return parts[2].split("::", 1)[0]


@cache
def settings_for_stack(stack: str) -> Settings:
    return load_settings(stack)


def from_args(args: ResourceValidationArgs) -> Resource:
    return Resource(
        args.resource_type,
        args.name,
        plain(args.props),
        args.urn,
        protect=bool(args.opts.protect),
        provider=args.provider.urn if args.provider else "",
    )


def from_policy_resource(r: PolicyResource) -> Resource:
    props = plain(r.props)
    return Resource(
        r.resource_type,
        r.name,
        props,
        r.urn,
        parent_urn=r.parent.urn if r.parent else "",
        protect=bool(r.opts.protect),
        id=str(props.get("id") or ""),
        dependencies={k: tuple(d.urn for d in deps) for k, deps in r.property_dependencies.items()},
        provider=r.provider.urn if r.provider else "",
    )


def _report_all(rule: Rule, view: StackView, report: ReportViolation) -> None:
    for v in run_rule(rule, view):
        report(v.message, v.urn or None)


def resource_policy(rule: Rule, settings_for: Callable[[str], Settings] = settings_for_stack) -> Policy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        resource = from_args(args)
        _report_all(rule, StackView(settings_for(stack_of(args.urn)), [resource]), report)

    return ResourceValidationPolicy(rule.name, rule.description, validate, LEVELS[rule.enforcement])


def stack_policy(rule: Rule, settings_for: Callable[[str], Settings] = settings_for_stack) -> Policy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [from_policy_resource(r) for r in args.resources]
        if not resources:
            return
        _report_all(rule, StackView(settings_for(stack_of(resources[0].urn)), resources), report)

    return StackValidationPolicy(rule.name, rule.description, validate, LEVELS[rule.enforcement])


def build_policies(settings_for: Callable[[str], Settings] = settings_for_stack) -> list[Policy]:
    return [(stack_policy if r.is_stack_rule else resource_policy)(r, settings_for) for r in RULES]
