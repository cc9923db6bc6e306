"""The list of rules and the decorators that put a rule function on it, with its name and enforcement level.

A resource rule is `f(resource, settings) -> Iterable[Violation]` over the resource types it names; a stack rule is
`f(view) -> Iterable[Violation]` over every resource at once, for rules that tie resources together (a bucket and
its versioning, a CronJob that must exist).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from policies.model import Enforcement, Resource, Violation

if TYPE_CHECKING:
    from drtopo.settings import Settings
    from policies.view import StackView

ResourceCheck = Callable[[Resource, "Settings"], Iterable[Violation]]
StackCheck = Callable[["StackView"], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    enforcement: Enforcement
    check: Callable[..., Iterable[Violation]]
    types: tuple[str, ...] = ()

    @property
    def is_stack_rule(self) -> bool:
        return not self.types


RULES: list[Rule] = []


def _register(rule: Rule) -> None:
    if any(r.name == rule.name for r in RULES):
        raise ValueError(f"rule name {rule.name!r} is registered twice; expected unique rule names")
    RULES.append(rule)


def resource_rule(
    name: str, description: str, types: tuple[str, ...], enforcement: Enforcement = Enforcement.MANDATORY
) -> Callable[[ResourceCheck], ResourceCheck]:
    def wrap(check: ResourceCheck) -> ResourceCheck:
        _register(Rule(name, description, enforcement, check, types))
        return check

    return wrap


def stack_rule(
    name: str, description: str, enforcement: Enforcement = Enforcement.MANDATORY
) -> Callable[[StackCheck], StackCheck]:
    def wrap(check: StackCheck) -> StackCheck:
        _register(Rule(name, description, enforcement, check))
        return check

    return wrap


def rule_named(name: str) -> Rule:
    for rule in RULES:
        if rule.name == name:
            return rule
    raise KeyError(f"rule {name!r} is unknown; expected one of {', '.join(r.name for r in RULES)}")
