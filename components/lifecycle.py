"""S3 lifecycle rules computed from the retention settings: pure functions, no Pulumi calls.

Dumps and configuration exports are written under a tier prefix (`daily/`, `weekly/`, `monthly/`, `yearly/`); each
tier moves to cold storage and expires as its settings say. WAL archives are operational data; audit data is kept
(and Object-Locked) for `audit_years`. Every rule also expires noncurrent versions, so a deleted or overwritten
backup stays recoverable for the daily window, and aborts abandoned multipart uploads.
"""

from __future__ import annotations

import math
from typing import Any

from drtopo.settings import Retention, Tier

TIERED_PURPOSES = ("dumps", "config")
ABORT_MULTIPART_DAYS = 7
# Object Lock counts calendar years; a span of years holds at most one leap day per four years, rounded up.
DAYS_PER_YEAR = 365.25


def _rule(rule_id: str, prefix: str, days: int, noncurrent_days: int, tier: Tier | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id,
        "status": "Enabled",
        "filter": {"prefix": prefix},
        "expiration": {"days": days},
        "noncurrent_version_expiration": {"noncurrent_days": noncurrent_days},
        "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
    }
    if tier is not None and tier.cold_after_days is not None:
        rule["transitions"] = [{"days": tier.cold_after_days, "storage_class": tier.cold_storage_class}]
    return rule


def audit_retention_days(retention: Retention) -> int:
    """Days that cover `audit_years` calendar years from any start date, so expiry never precedes the lock."""
    return math.ceil(retention.audit_years * DAYS_PER_YEAR)


def lifecycle_rules(purpose: str, retention: Retention) -> list[dict[str, Any]]:
    """Rules for the bucket of `purpose`, shaped as `s3.BucketLifecycleConfiguration` rule inputs."""
    noncurrent_days = retention.daily.days
    if purpose in TIERED_PURPOSES:
        return [
            _rule(f"{name}-tier", f"{name}/", tier.days, noncurrent_days, tier)
            for name, tier in retention.tiers().items()
        ]
    if purpose == "wal":
        return [_rule("operational", "", retention.operational_days, noncurrent_days)]
    if purpose == "audit":
        # Locked versions outlive any shorter noncurrent expiry anyway; say so rather than pretend.
        days = audit_retention_days(retention)
        return [_rule("audit", "", days, days)]
    raise ValueError(f"bucket purpose {purpose!r} has no lifecycle; expected one of dumps, wal, config, audit")
