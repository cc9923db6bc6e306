"""Rules whose limits come from the stack's recovery objectives and retention settings (see `policies.limits`).

These are the rules that matter most: a generic linter cannot know that a 5-minute lag alarm is useless against a
1-minute RPO, or that a lifecycle rule expiring the daily tier after one day breaks the runbook's 30-day promise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from drtopo import cron
from drtopo.settings import Tier
from policies import limits
from policies import resource_types as types
from policies.model import Enforcement, Resource, Violation, as_list, fmt, number, truthy, violation
from policies.properties import parse_properties
from policies.registry import stack_rule
from policies.rules.database import is_replica, parameters
from policies.rules.kubernetes import containers
from policies.view import StackView

TIERED_PURPOSES = ("dumps", "config")
RUNBOOK_OPERATIONAL_DAYS = 90
DAYS_PER_YEAR = 365
ARCHIVE_AT_LEAST_EVERY_SECONDS = 60
FULL_BACKUP = re.compile(r"pg_dump|scripts\.backup|\bdump", re.IGNORECASE)
RESTORE_TEST = re.compile(r"\brestore-test\b")
# MirrorMaker 2's own defaults, used when the properties do not set a key.
MM2_DEFAULTS = {
    "emit.checkpoints.enabled": "true",
    "emit.checkpoints.interval.seconds": "60",
    "emit.heartbeats.enabled": "true",
    "emit.heartbeats.interval.seconds": "1",
    "sync.group.offsets.enabled": "false",
    "sync.group.offsets.interval.seconds": "60",
}
MM2_INTERVALS = (
    "emit.checkpoints.interval.seconds",
    "sync.group.offsets.interval.seconds",
    "emit.heartbeats.interval.seconds",
)
MM2_FLAGS = ("emit.checkpoints.enabled", "sync.group.offsets.enabled", "emit.heartbeats.enabled")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"


# --- database ---------------------------------------------------------------------------------------------------


def replica_lag_alarms(view: StackView) -> list[Resource]:
    return [a for a in view.of_type(types.METRIC_ALARM) if a.get("metricName") == "ReplicaLag"]


@stack_rule(
    "replica-lag-alarm-below-rpo",
    "A replica's lag alarm fires before the lag reaches the database RPO; every replica has one.",
)
def replica_lag_alarm_below_rpo(view: StackView) -> Iterator[Violation]:
    rpo = limits.database_rpo_seconds(view.settings)
    alarms = replica_lag_alarms(view)
    for replica in (i for i in view.of_type(types.RDS_INSTANCE) if is_replica(i)):
        if not alarms:
            yield violation(replica, "ReplicaLag alarm", None, f"a CloudWatch alarm on ReplicaLag below {rpo:g} s")
    for alarm in alarms:
        threshold = number(alarm.get("threshold"))
        if threshold is None or threshold >= rpo:
            yield violation(
                alarm, "threshold", alarm.get("threshold"), f"< {rpo:g} seconds", f"database RPO {_minutes(rpo)}"
            )
        operator = alarm.get("comparisonOperator")
        if operator not in ("GreaterThanThreshold", "GreaterThanOrEqualToThreshold"):
            yield violation(alarm, "comparisonOperator", operator, "'GreaterThanThreshold'")


@stack_rule(
    "replica-lag-alarm-fires-within-rpo",
    "With replication stalled, the lag alarm's threshold plus its evaluation window stays within the RPO.",
    Enforcement.ADVISORY,
)
def replica_lag_alarm_fires_within_rpo(view: StackView) -> Iterator[Violation]:
    rpo = limits.database_rpo_seconds(view.settings)
    for alarm in replica_lag_alarms(view):
        threshold = number(alarm.get("threshold")) or 0
        periods = number(alarm.get("datapointsToAlarm")) or number(alarm.get("evaluationPeriods")) or 1
        window = (number(alarm.get("period")) or 60) * periods
        if threshold + window > rpo:
            yield violation(
                alarm,
                "threshold + period x datapoints",
                f"{threshold:g} + {window:g} s",
                f"<= {rpo:g} s",
                f"lag keeps growing while the alarm evaluates; database RPO {_minutes(rpo)}",
            )


@stack_rule(
    "wal-archive-within-rpo", "PostgreSQL archives WAL at least once a minute and well within the database RPO."
)
def wal_archive_within_rpo(view: StackView) -> Iterator[Violation]:
    limit = min(ARCHIVE_AT_LEAST_EVERY_SECONDS, limits.database_rpo_seconds(view.settings))
    for group in view.of_type(types.RDS_PARAMETER_GROUP):
        value = parameters(group).get("archive_timeout")
        seconds = number(value)
        if seconds is None or not 0 < seconds <= limit:
            yield violation(group, "parameters[archive_timeout]", value, f"1..{limit:g} seconds")


# --- storage ----------------------------------------------------------------------------------------------------


@stack_rule(
    "s3-replication-within-rpo",
    "Backup buckets replicate to the peer region with Replication Time Control within the RPO, delete markers too.",
)
def s3_replication_within_rpo(view: StackView) -> Iterator[Violation]:
    rpo = limits.storage_rpo_minutes(view.settings)
    required = f"<= {rpo:g} minutes"
    why = f"region-failure RPO {rpo:g} min"
    if view.settings.is_primary:
        for purpose, bucket in view.buckets_by_purpose().items():
            if not view.companions(bucket, types.BUCKET_REPLICATION):
                yield violation(bucket, "BucketReplicationConfig", None, "replication to the peer region", purpose)
    for config in view.of_type(types.BUCKET_REPLICATION):
        for i, rule in enumerate(as_list(config.get("rules"))):
            if rule.get("status") != "Enabled":
                continue
            destination = rule.get("destination") or {}
            rtc = destination.get("replicationTime") or {}
            minutes = number((rtc.get("time") or {}).get("minutes"))
            if rtc.get("status") != "Enabled" or minutes is None or minutes > rpo:
                found = (rtc.get("time") or {}).get("minutes") if rtc.get("status") == "Enabled" else rtc.get("status")
                yield violation(config, f"rules[{i}].destination.replicationTime", found, required, why)
            metrics = destination.get("metrics") or {}
            threshold = number((metrics.get("eventThreshold") or {}).get("minutes"))
            if metrics.get("status") != "Enabled" or threshold is None or threshold > rpo:
                enabled = metrics.get("status") == "Enabled"
                found = (metrics.get("eventThreshold") or {}).get("minutes") if enabled else metrics.get("status")
                yield violation(config, f"rules[{i}].destination.metrics.eventThreshold", found, required, why)
            marker = (rule.get("deleteMarkerReplication") or {}).get("status")
            if marker != "Enabled":
                yield violation(config, f"rules[{i}].deleteMarkerReplication.status", marker, "'Enabled'")


def _rule_prefix(rule: dict) -> str | None:
    prefix = (rule.get("filter") or {}).get("prefix")
    return prefix if prefix is not None else rule.get("prefix")


def _enabled_rule(config: Resource, prefix: str) -> tuple[int, dict] | None:
    for i, rule in enumerate(as_list(config.get("rules"))):
        if rule.get("status") == "Enabled" and (_rule_prefix(rule) or "") == prefix:
            return i, rule
    return None


@stack_rule(
    "lifecycle-covers-tiers",
    "Tiered backup buckets expire each tier (daily/ weekly/ monthly/ yearly/) after exactly its retention, "
    "moving to cold storage as configured; WAL keeps operational data; audit data outlives its lock.",
)
def lifecycle_covers_tiers(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    required_days = limits.tier_days_required(settings)
    tiers = settings.retention.tiers()
    buckets = view.buckets_by_purpose()
    expectations: list[tuple[str, str, int, str, bool]] = []
    for purpose in TIERED_PURPOSES:
        for name, days in required_days.items():
            floor = limits.RUNBOOK_RETENTION.tiers()[name].days
            what = f"{name} tier: settings {tiers[name].days} days, runbook at least {floor}"
            expectations.append((purpose, f"{name}/", days, what, False))
    operational = max(settings.retention.operational_days, RUNBOOK_OPERATIONAL_DAYS)
    expectations.append(("wal", "", operational, f"operational data {operational} days", False))
    audit_days = limits.audit_years_required(settings) * DAYS_PER_YEAR
    expectations.append(("audit", "", audit_days, f"audit data {audit_days // DAYS_PER_YEAR} years", True))
    for purpose, prefix, days, what, at_least in expectations:
        bucket = buckets.get(purpose)
        if bucket is None:
            continue
        configs = view.companions(bucket, types.BUCKET_LIFECYCLE)
        if not configs:
            yield violation(bucket, "BucketLifecycleConfiguration", None, f"expiry of {prefix or 'all'} data", what)
        for config in configs:
            found = _enabled_rule(config, prefix)
            if found is None:
                required = f"an enabled rule expiring after {days} days"
                yield violation(config, f"rules[prefix={prefix!r}]", None, required, what)
                continue
            i, rule = found
            expiry = (rule.get("expiration") or {}).get("days")
            value = number(expiry)
            if value is None or (value < days if at_least else value != days):
                required = f"{'>=' if at_least else '=='} {days}"
                yield violation(config, f"rules[{i}].expiration.days", expiry, required, what)
            tier = tiers.get(prefix.rstrip("/"))
            if tier is not None:
                yield from _check_transition(config, i, rule, tier)


def _check_transition(config: Resource, i: int, rule: dict, tier: Tier) -> Iterator[Violation]:
    if tier.cold_after_days is None:
        return
    transitions = [t for t in as_list(rule.get("transitions")) if isinstance(t, dict)]
    match = [t for t in transitions if t.get("storageClass") == tier.cold_storage_class]
    days = number(match[0].get("days")) if match else None
    if days != tier.cold_after_days:
        yield violation(
            config,
            f"rules[{i}].transitions",
            [f"{fmt(t.get('days'))}d {t.get('storageClass')}" for t in transitions] or None,
            f"{tier.cold_storage_class} after {tier.cold_after_days} days",
        )


@stack_rule("audit-object-lock", "Audit data is Object-Locked in COMPLIANCE mode for at least 7 years.")
def audit_object_lock(view: StackView) -> Iterator[Violation]:
    years = limits.audit_years_required(view.settings)
    bucket = view.buckets_by_purpose().get("audit")
    if bucket is None:
        yield violation(None, "audit bucket", None, f"a bucket named for purpose 'audit' locked {years} years")
        return
    if not truthy(bucket.get("objectLockEnabled")):
        yield violation(bucket, "objectLockEnabled", bucket.get("objectLockEnabled"), "true")
    locks = view.companions(bucket, types.BUCKET_OBJECT_LOCK)
    if not locks:
        yield violation(bucket, "BucketObjectLockConfiguration", None, f"COMPLIANCE for {years} years")
    for lock in locks:
        retention = lock.get("rule.defaultRetention") or {}
        if retention.get("mode") != "COMPLIANCE":
            yield violation(lock, "rule.defaultRetention.mode", retention.get("mode"), "'COMPLIANCE'")
        locked_days = (number(retention.get("years")) or 0) * DAYS_PER_YEAR + (number(retention.get("days")) or 0)
        if locked_days < years * DAYS_PER_YEAR:
            found = f"{fmt(retention.get('years'))} years" if retention.get("years") else retention.get("days")
            yield violation(
                lock,
                "rule.defaultRetention.years",
                found,
                f">= {years} years",
                f"settings {view.settings.retention.audit_years} years, runbook {limits.RUNBOOK_AUDIT_YEARS}",
            )


# --- backups ----------------------------------------------------------------------------------------------------


def full_backup_jobs(view: StackView) -> list[Resource]:
    """CronJobs that take the full database dump: named for it or running pg_dump / scripts.backup."""
    jobs = []
    for job in view.of_type(types.K8S_CRONJOB):
        words = [job.name, str(job.get("metadata.name") or "")]
        for _, container in containers(job):
            words += [str(w) for w in as_list(container.get("command")) + as_list(container.get("args"))]
        if (
            FULL_BACKUP.search(" ".join(words))
            and "export" not in job.name
            and not RESTORE_TEST.search(" ".join(words))
        ):
            jobs.append(job)
    return jobs


def restore_test_jobs(view: StackView) -> list[Resource]:
    """CronJobs running `scripts.backup restore-test`."""
    return [
        job
        for job in view.of_type(types.K8S_CRONJOB)
        if any(
            RESTORE_TEST.search(" ".join(str(w) for w in as_list(c.get("command")) + as_list(c.get("args"))))
            for _, c in containers(job)
        )
    ]


def _active_on_primary(view: StackView, jobs: list[Resource], what: str, wanted: str) -> Iterator[Violation]:
    """A violation when the primary stack has none of `jobs` running (none at all, or all suspended)."""
    if view.settings.is_primary and all(truthy(j.get("spec.suspend")) for j in jobs):
        yield violation(None, what, "suspended" if jobs else None, wanted)


@stack_rule(
    "restore-test-scheduled",
    "The primary stack restores a dump on a schedule (scripts.backup restore-test), as AWS Backup restore testing.",
)
def restore_test_scheduled(view: StackView) -> Iterator[Violation]:
    jobs = restore_test_jobs(view)
    yield from _active_on_primary(view, jobs, "CronJob running scripts.backup restore-test", "an active CronJob")
    for job in jobs:
        schedule = str(job.get("spec.schedule") or "")
        try:
            cron.check_schedule(schedule)
        except cron.ScheduleError as exc:
            yield violation(job, "spec.schedule", schedule, "a valid cron schedule", str(exc))


@stack_rule("daily-full-backup", "A CronJob takes a full database dump at least once every day.")
def daily_full_backup(view: StackView) -> Iterator[Violation]:
    jobs = full_backup_jobs(view)
    yield from _active_on_primary(view, jobs, "CronJob running pg_dump", "an active CronJob with a daily schedule")
    for job in jobs:
        schedule = str(job.get("spec.schedule") or "")
        try:
            daily = cron.runs_every_day(schedule)
        except cron.ScheduleError as exc:
            yield violation(job, "spec.schedule", schedule, "valid cron that runs every day", str(exc))
            continue
        if not daily:
            yield violation(job, "spec.schedule", schedule, "a schedule that runs every day (e.g. '15 2 * * *')")


# --- kafka ------------------------------------------------------------------------------------------------------


def mm2_documents(view: StackView) -> list[tuple[Resource, str, dict[str, str]]]:
    """(ConfigMap, data key, parsed properties) for every MirrorMaker 2 properties text in a ConfigMap."""
    found = []
    for config_map in view.of_type(types.K8S_CONFIGMAP):
        for key, text in (config_map.get("data") or {}).items():
            props = parse_properties(str(text))
            if "clusters" in props:
                found.append((config_map, key, props))
    return found


def mm2_setting(props: dict[str, str], flow: str, key: str) -> str:
    return props.get(f"{flow}.{key}", props.get(key, MM2_DEFAULTS[key]))


@stack_rule(
    "mirrormaker-within-kafka-rpo",
    "MirrorMaker 2 checkpoints, syncs group offsets and heartbeats within the Kafka RPO and mirrors every topic.",
)
def mirrormaker_within_kafka_rpo(view: StackView) -> Iterator[Violation]:
    rpo = limits.kafka_rpo_seconds(view.settings)
    documents = mm2_documents(view)
    if not documents:
        yield violation(None, "MirrorMaker 2 ConfigMap", None, "a ConfigMap holding mm2.properties")
    for config_map, key, props in documents:
        # Cluster aliases cannot contain '.', so a flow's keys are `<source>-><target>.<setting>`.
        flows = sorted({k.split(".", 1)[0] for k in props if "->" in k.split(".", 1)[0]})
        for flow in flows:
            for interval in MM2_INTERVALS:
                value = mm2_setting(props, flow, interval)
                if (number(value) or float("inf")) > rpo:
                    yield violation(
                        config_map,
                        f"data.{key}: {flow}.{interval}",
                        value,
                        f"<= {rpo:g}",
                        f"Kafka RPO {_minutes(rpo)}",
                    )
            if props.get(f"{flow}.enabled") != "true":
                continue
            for flag in MM2_FLAGS:
                if mm2_setting(props, flow, flag) != "true":
                    yield violation(config_map, f"data.{key}: {flow}.{flag}", mm2_setting(props, flow, flag), "true")
            mirrored = set(filter(None, props.get(f"{flow}.topics", "").split("|")))
            missing = sorted(set(view.settings.kafka.mirrored_topics) - mirrored)
            if missing:
                yield violation(
                    config_map, f"data.{key}: {flow}.topics", props.get(f"{flow}.topics"), f"to include {missing}"
                )


# --- dns --------------------------------------------------------------------------------------------------------


@stack_rule(
    "dns-detection-within-rto",
    "Route53 health checks detect a dead region (interval x failure threshold) well inside the region RTO.",
)
def dns_detection_within_rto(view: StackView) -> Iterator[Violation]:
    limit = limits.detection_limit_seconds(view.settings)
    rto = view.settings.objectives.region_failure.rto_seconds
    for check in view.of_type(types.ROUTE53_HEALTH_CHECK):
        interval = number(check.get("requestInterval")) or 30
        threshold = number(check.get("failureThreshold")) or 3
        if interval * threshold > limit:
            yield violation(
                check,
                "requestInterval x failureThreshold",
                f"{interval:g} s x {threshold:g} = {interval * threshold:g} s",
                f"<= {limit:g} s",
                f"{limits.DETECTION_SHARE_OF_RTO:.0%} of the region-failure RTO {_minutes(rto)}",
            )
