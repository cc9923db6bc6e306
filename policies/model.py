"""What the policy rules work on and what they return: a resource as registered, and a violation of a rule.

Rules never see Pulumi objects: the engine hands them `Resource`s (from the mocked program, or from the
pulumi-policy pack during `pulumi preview`) and they return `Violation`s naming the resource, the property, the
value found and the value required. Values that cannot be known before `pulumi up` are the `UNKNOWN` sentinel;
reading one raises `UnknownValue`, and the engine skips that check rather than guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Enforcement(StrEnum):
    """Mandatory violations fail the check (and block `pulumi up`); advisory ones are reported only."""

    MANDATORY = "mandatory"
    ADVISORY = "advisory"


class _Unknown:
    def __repr__(self) -> str:
        return "<unknown until apply>"


UNKNOWN: Any = _Unknown()


class UnknownValue(Exception):
    """A rule read a value that is only known after `pulumi up`."""


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def path_parts(path: str) -> list[str | int]:
    """`rules[0].expiration.days` -> ["rules", 0, "expiration", "days"]."""
    return [int(index) if index else name for name, index in _PART.findall(path)]


def lookup(node: Any, path: str, default: Any = None) -> Any:
    """Dotted/indexed lookup into nested inputs; raises `UnknownValue` when it meets `UNKNOWN` on the way."""
    for part in path_parts(path):
        if node is UNKNOWN:
            raise UnknownValue(path)
        in_list = isinstance(part, int) and isinstance(node, list) and part < len(node)
        if in_list or (isinstance(part, str) and isinstance(node, Mapping) and part in node):
            node = node[part]
        else:
            return default
    if node is UNKNOWN:
        raise UnknownValue(path)
    return node


@dataclass(frozen=True)
class Resource:
    """One registered resource: type token, logical name, inputs (camelCased, as they reach the provider).

    `id` is the physical id when known; `dependencies` maps an input property to the URNs it was computed from,
    which is how a companion resource (versioning, policy, ...) is tied to its bucket when the name is unknown.
    `provider` is the URN of the provider resource it is managed through ("" for the ambient default provider).
    """

    type: str
    name: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    urn: str = ""
    parent_urn: str = ""
    protect: bool = False
    id: str = ""
    dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    provider: str = ""

    def get(self, path: str, default: Any = None) -> Any:
        return lookup(self.inputs, path, default)

    @property
    def label(self) -> str:
        return f"{self.type.rsplit(':', 1)[-1]} {self.name!r}"


def fmt(value: Any) -> str:
    """Readable value: 30.0 -> 30, strings quoted, missing -> (not set)."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class Violation:
    """A rule broken by one resource (or by the stack as a whole when `resource_name` is empty)."""

    rule: str
    enforcement: Enforcement
    resource_type: str
    resource_name: str
    urn: str
    property: str
    found: Any
    required: str
    why: str = ""

    @property
    def message(self) -> str:
        where = f"{self.resource_type.rsplit(':', 1)[-1]} {self.resource_name!r}" if self.resource_name else "stack"
        text = f"{where}: {self.property} = {fmt(self.found)}; required {self.required}"
        return f"{text} ({self.why})" if self.why else text

    def to_dict(self) -> dict[str, Any]:
        found = self.found if self.found is None or isinstance(self.found, (str, int, float, bool)) else str(self.found)
        return {
            "rule": self.rule,
            "enforcement": self.enforcement.value,
            "resource_type": self.resource_type,
            "resource": self.resource_name,
            "urn": self.urn,
            "property": self.property,
            "found": found,
            "required": self.required,
            "message": self.message,
        }


def violation(resource: Resource | None, prop: str, found: Any, required: str, why: str = "") -> Violation:
    """What rule functions return; the engine stamps the rule's name and enforcement level on it."""
    return Violation(
        rule="",
        enforcement=Enforcement.MANDATORY,
        resource_type=resource.type if resource else "",
        resource_name=resource.name if resource else "",
        urn=resource.urn if resource else "",
        property=prop,
        found=found,
        required=required,
        why=why,
    )


def as_list(value: Any) -> list[Any]:
    """Inputs that may be one object or a list of them, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def truthy(value: Any) -> bool:
    """Booleans as the provider sees them (the engine may pass "true")."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def number(value: Any) -> float | None:
    """A numeric input as a float (inputs reach the provider as floats or numeric strings), or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
