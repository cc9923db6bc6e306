"""Runs every rule over a stack's resources and returns the violations, each stamped with its rule and level."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import policies.rules  # noqa: F401  (registers the rules)
from drtopo.settings import Settings
from policies.model import UNKNOWN, Enforcement, Resource, UnknownValue, Violation
from policies.registry import RULES, Rule
from policies.view import StackView


def _stamp(rule: Rule, found: Iterable[Violation]) -> list[Violation]:
    # A value unknown before `pulumi up` that a rule read through a nested dict is not evidence of a violation.
    return [
        dataclasses.replace(v, rule=rule.name, enforcement=rule.enforcement) for v in found if v.found is not UNKNOWN
    ]


def run_rule(rule: Rule, view: StackView) -> list[Violation]:
    """One rule over the stack; a check that meets a value unknown before `pulumi up` is skipped, not guessed."""
    if rule.is_stack_rule:
        try:
            return _stamp(rule, list(rule.check(view)))
        except UnknownValue:
            return []
    found: list[Violation] = []
    for resource in view.of_type(*rule.types):
        try:
            found += _stamp(rule, list(rule.check(resource, view.settings)))
        except UnknownValue:
            continue
    return found


def evaluate_rules(
    resources: Sequence[Resource], settings: Settings, rules: Sequence[Rule] | None = None
) -> list[Violation]:
    view = StackView(settings, resources)
    return [v for rule in (RULES if rules is None else rules) for v in run_rule(rule, view)]


def mandatory(violations: Iterable[Violation]) -> list[Violation]:
    return [v for v in violations if v.enforcement is Enforcement.MANDATORY]
