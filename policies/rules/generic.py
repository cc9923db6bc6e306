"""Rules for any stack: stateful resources protected, KMS keys rotated."""

from __future__ import annotations

from collections.abc import Iterator

from drtopo.settings import Settings
from policies import resource_types as types
from policies.model import Resource, Violation, truthy, violation
from policies.registry import resource_rule


@resource_rule(
    "stateful-protected",
    "Stateful resources (buckets, databases, keys, zones, secrets) carry `protect`, so no update can delete them.",
    types.STATEFUL,
)
def stateful_protected(resource: Resource, settings: Settings) -> Iterator[Violation]:
    if not resource.protect:
        yield violation(resource, "opts.protect", resource.protect, "true", "a role switch must never delete data")


@resource_rule("kms-key-rotation", "Customer-managed KMS keys rotate yearly.", (types.KMS_KEY,))
def kms_key_rotation(key: Resource, settings: Settings) -> Iterator[Violation]:
    if not truthy(key.get("enableKeyRotation")):
        yield violation(key, "enableKeyRotation", key.get("enableKeyRotation"), "true")
