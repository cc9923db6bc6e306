"""A stack's resources seen together, for rules that relate resources to each other and to the settings.

S3 settings in pulumi-aws 7 live in companion resources (versioning, encryption, policy, ...) whose `bucket` input
names the bucket; `companions` finds them by the bucket's name or id, or, when that is unknown during a preview,
by the dependency of the `bucket` input on the bucket's URN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drtopo import naming
from drtopo.settings import Settings
from policies import resource_types as types
from policies.model import UNKNOWN, Resource


@dataclass(frozen=True)
class StackView:
    settings: Settings
    resources: Sequence[Resource]

    def of_type(self, *type_tokens: str) -> list[Resource]:
        return [r for r in self.resources if r.type in type_tokens]

    def companions(self, target: Resource, companion_type: str, prop: str = "bucket") -> list[Resource]:
        """Resources of `companion_type` whose `prop` input refers to `target`."""
        names = {n for n in (target.id, target.name, target.inputs.get("bucket")) if n and n is not UNKNOWN}
        return [
            r
            for r in self.of_type(companion_type)
            if r.inputs.get(prop) in names or (target.urn and target.urn in r.dependencies.get(prop, ()))
        ]

    def bucket_purpose(self, bucket: Resource) -> str | None:
        """Which of the program's buckets this is (dumps, wal, config, audit), from its physical name."""
        physical = bucket.inputs.get("bucket")
        for purpose in naming.BUCKET_PURPOSES:
            if physical == naming.bucket_name(self.settings, purpose):
                return purpose
        return None

    def buckets_by_purpose(self) -> dict[str, Resource]:
        found: dict[str, Resource] = {}
        for bucket in self.of_type(types.BUCKET):
            purpose = self.bucket_purpose(bucket)
            if purpose is not None:
                found[purpose] = bucket
        return found
