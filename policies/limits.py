"""The limits rules derive from a stack's settings, and the runbook floors those settings may not go below.

The runbook's objectives and retention are the defaults of the settings model; a stack may be stricter, never
looser, so a weakened setting is caught even when the program faithfully follows it.
"""

from __future__ import annotations

from drtopo.settings import Objectives, Retention, Settings

RUNBOOK_OBJECTIVES = Objectives()
RUNBOOK_RETENTION = Retention()
RUNBOOK_AUDIT_YEARS = 7
MIN_BACKUP_RETENTION_DAYS = 7
# An outage must be detected within this share of the region-failure RTO: the rest is for promotion and checks.
DETECTION_SHARE_OF_RTO = 0.1


def database_rpo_seconds(settings: Settings) -> float:
    """Data the database may lose: the stricter of the region-failure and database-corruption RPOs."""
    o = settings.objectives
    return min(o.region_failure.rpo_seconds, o.database_corruption.rpo_seconds)


def storage_rpo_minutes(settings: Settings) -> float:
    """Backups replicated to the peer region may lag by at most the region-failure RPO."""
    return settings.objectives.region_failure.rpo_minutes


def kafka_rpo_seconds(settings: Settings) -> float:
    return settings.objectives.kafka_cluster_failure.rpo_seconds


def detection_limit_seconds(settings: Settings) -> float:
    """How long DNS failover may take to notice a dead region."""
    return settings.objectives.region_failure.rto_seconds * DETECTION_SHARE_OF_RTO


def tier_days_required(settings: Settings) -> dict[str, int]:
    """Expiry days per tier: what settings say, unless that is shorter than the runbook (then the runbook)."""
    floors = RUNBOOK_RETENTION.tiers()
    return {name: max(tier.days, floors[name].days) for name, tier in settings.retention.tiers().items()}


def audit_years_required(settings: Settings) -> int:
    return max(settings.retention.audit_years, RUNBOOK_AUDIT_YEARS)
