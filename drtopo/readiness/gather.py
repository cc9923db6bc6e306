"""The readiness items measured on the live pair (reads only, changes nothing): the library the `status` command
and the scheduled readiness job call.

Each measurement reuses what the other commands measure with: the standby's lag as promote measures it
(`Database.lag`), the dumps and restore tests as `backup list` reads them, the WAL chain as `wal check` does,
MirrorMaker's lag as `validate` does (in an isolated child, `drtopo.checks.kafka`), the role marker as every
`pulumi up` reads it. The rules that judge them are `drtopo.readiness.rules`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import KafkaException

from drtopo.backup import store as dump_store
from drtopo.backup import wal
from drtopo.backup.dumps import latest_restore_test
from drtopo.checks import kafka as kafka_checks
from drtopo.database import database_for
from drtopo.errors import one_line
from drtopo.failover import marker
from drtopo.kafka import isolated
from drtopo.kafka.admin import Partition, committed_offsets
from drtopo.kafka.offsets import CheckpointError, checkpoints_topic, decode_checkpoint, read_topic
from drtopo.mm2_properties import mirror_flow
from drtopo.outputs import StackOutputs
from drtopo.readiness import drills, rules
from drtopo.readiness.estimate import SCENARIO, Estimate, estimate
from drtopo.report import Check, Report
from drtopo.settings import REPO_DIR, Settings, load_settings

AWS_ERRORS = (ClientError, BotoCoreError)


@dataclass
class Readiness:
    """The items (a Report: ok, checks, measured), the estimate and the drills' history per scenario."""

    report: Report
    estimate: Estimate
    history: dict[str, list[dict[str, Any]]]

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "estimate": self.estimate.to_dict(), "drills": self.history}


def _add(report: Report, item: Check) -> None:
    report.record(item.name, item.outcome, item.detail, item.value, item.limit)


def replica_item(standby: StackOutputs, primary: StackOutputs, rpo: float) -> tuple[Check, float | None]:
    try:
        lag = database_for(standby).lag(database_for(primary))
    except (psycopg.OperationalError, *AWS_ERRORS) as exc:
        return rules.replica_lag(None, rpo, f"{standby.stack}'s database: {one_line(exc)}"), None
    return rules.replica_lag(lag.seconds, rpo, f"{standby.stack} behind {primary.stack}: {lag.source}"), lag.seconds


def dump_items(primary: StackOutputs, now: datetime) -> list[Check]:
    s3 = dump_store.s3_client(primary)
    bucket = primary.dump_bucket
    try:
        dumps = [d for d in dump_store.list_dumps(s3, bucket) if d[0].database == primary.db_name]
        tested = latest_restore_test(s3, bucket, primary.db_name)
    except AWS_ERRORS as exc:
        reason = f"s3://{bucket}: {one_line(exc)}"
        return [
            rules.at_most(rules.DUMP_AGE, None, rules.dump_age_limit("daily"), "", reason),
            Check(rules.RESTORE_TEST, "fail", f"not readable: {reason}"),
        ]
    if not dumps:
        age_item = rules.dump_age(None, "daily", "", bucket)
    else:
        parsed, key, _, _ = max(dumps, key=lambda d: (d[0].taken_at, d[0].tier == "daily"))
        age_item = rules.dump_age((now - parsed.taken_at).total_seconds(), parsed.tier, key, bucket)
    return [age_item, rules.restore_test(tested, now)]


def wal_items(primary: StackOutputs, rpo: float, now: datetime) -> list[Check]:
    bucket = primary.wal_bucket
    try:
        s3 = dump_store.s3_client(primary)
        archive = wal.read_archive(s3, bucket)
        oldest = archive.oldest_base_backup
        gaps = None if oldest is None else wal.chain_gaps(s3, archive, oldest)
    except AWS_ERRORS as exc:
        reason = f"s3://{bucket}: {one_line(exc)}"
        return [rules.wal_chain(None, reason), rules.wal_age(None, rpo, bucket, reason)]
    newest = archive.segments[-1] if archive.segments else "none"
    if oldest is None:
        chain = rules.wal_chain(None, f"s3://{bucket} holds no base backup; upload one with `scripts.wal base`")
    elif gaps:
        chain = rules.wal_chain(gaps, f"{len(gaps)} segments missing, first {gaps[0]}")
    else:
        chain = rules.wal_chain(gaps, f"no gap from {oldest} (oldest base backup) to {newest}")
    age = None if archive.newest_upload is None else (now - archive.newest_upload).total_seconds()
    return [chain, rules.wal_age(age, rpo, bucket)]


def kafka_steps(settings: Settings, outputs: StackOutputs, max_lag: int) -> Iterator[Any]:
    """The isolated child's side: MirrorMaker's lag (a Report as `validate` measures it), then the consumer group's
    checkpoints on the target cluster (partition -> (upstream offset, time written)) and its commits on the source,
    or the reason they could not be read."""
    part = Report()
    kafka_checks.mirror_checks(part, settings, outputs, max_lag)
    yield part
    source_alias = settings.region if settings.is_primary else mirror_flow(settings)[0]
    source, target = outputs.kafka_bootstrap, outputs.peer_kafka_bootstrap
    if not settings.is_primary:
        source, target = target, source
    topic, group = checkpoints_topic(source_alias), settings.kafka.consumer_group
    latest: dict[Partition, tuple[int, float]] = {}
    try:
        committed = committed_offsets(source, group, settings.kafka.mirrored_topics)
        records = read_topic(target, topic)
        for r in records:
            if r.key is not None and r.value is not None:
                cp = decode_checkpoint(r.key, r.value)
                if cp.group == group:
                    latest[cp.topic_partition] = (cp.upstream_offset, r.timestamp_ms / 1000)
    except LookupError:
        yield {}, committed, f"{topic} on {target} does not exist yet"
        return
    except (KafkaException, TimeoutError, CheckpointError) as exc:
        yield None, None, f"{topic} on {target}, group {group} on {source}: {one_line(exc)}"
        return
    yield latest, committed, f"{topic} on {target}"


def kafka_items(settings: Settings, outputs: StackOutputs, now: datetime) -> tuple[list[Check], float | None]:
    rpo = settings.objectives.kafka_cluster_failure.rpo_seconds
    max_lag = settings.kafka.mirror.offset_lag_max
    answers: list[Any] = []
    error = None
    try:
        answers.extend(isolated.stream(kafka_steps, settings, outputs, max_lag, timeout=90.0, what="readiness Kafka"))
    except isolated.IsolatedError as exc:
        error = exc.reason
    items: list[Check] = []
    mirror_seconds = None
    if answers:
        part: Report = answers[0]
        records = part.measured.get("mirror_lag_records")
        seconds = part.measured.get("mirror_lag_seconds") or {}
        why = "; ".join(c.detail for c in part.checks if c.outcome != "pass") or "no measurement"
        if records is None and any(c.outcome == "skip" for c in part.checks):
            items.append(Check(rules.MIRROR_LAG, "skip", why))
        else:
            items.append(rules.mirror_lag(records, seconds, max_lag, rpo, why))
        if records is not None:
            mirror_seconds = max([s for s in seconds.values() if s is not None], default=0.0)
    else:
        items.append(rules.mirror_lag(None, {}, max_lag, rpo, error or "no answer"))
    checkpoints, committed, where = answers[1] if len(answers) > 1 else (None, None, error or "no answer")
    if checkpoints is None or committed is None:
        items.append(Check(rules.CHECKPOINT_AGE, "fail", f"not measurable: {where}", None, rpo))
    else:
        items.append(rules.checkpoint_age(checkpoints, committed, now.timestamp(), rpo, where))
    return items, mirror_seconds


def roles_item(settings: Settings, peer: Settings, regions: tuple[str, str]) -> Check:
    name = marker.marker_name(settings.stack, peer.stack)
    found: list[marker.RoleMarker | None] = []
    where: dict[int, str] = {}
    unread = []
    for region in regions:
        try:
            m = marker.read(region, name)
        except (*AWS_ERRORS, marker.MarkerError) as exc:
            unread.append(f"{region}: {one_line(exc)}")
            continue
        found.append(m)
        if m is not None:
            where.setdefault(m.epoch, f"{name} in {region}")
    newest = marker.newest(found)
    item = rules.roles(
        {settings.stack: settings.role.value, peer.stack: peer.role.value},
        newest,
        where.get(newest.epoch, name) if newest else name,
    )
    if unread and len(unread) == len(regions) and item.ok:
        # The stack files agree with each other, but what the marker says was not read: not a pass.
        why = f"the stack files say {item.value}, but the role marker is readable in no region: {'; '.join(unread)}"
        return Check(rules.ROLES, "skip", why)
    if unread:
        item.detail += f"; marker not readable in {', '.join(unread)}"
    return item


def gather(
    settings: Settings,
    outputs: StackOutputs,
    peer: StackOutputs | None,
    project_dir: Path = REPO_DIR,
    now: datetime | None = None,
) -> Readiness:
    """Every readiness item of the pair `outputs` belongs to, the estimate and the drills' history."""
    now = now or datetime.now(UTC)
    report = Report()
    rpo = settings.objectives.region_failure.rpo_seconds
    peer_settings = load_settings(settings.peer_stack, project_dir)
    primary, standby = (outputs, peer) if settings.is_primary else (peer, outputs)
    replica_seconds = None
    if primary is None or standby is None:
        missing = f"no outputs of the peer stack {settings.peer_stack}"
        _add(report, rules.replica_lag(None, rpo, missing))
    else:
        item, replica_seconds = replica_item(standby, primary, rpo)
        _add(report, item)
    backups = primary or outputs  # the primary's buckets hold what its jobs write; this stack's when it is unknown
    for item in [*dump_items(backups, now), *wal_items(backups, rpo, now)]:
        _add(report, item)
    kafka, mirror_seconds = kafka_items(settings, outputs, now)
    for item in kafka:
        _add(report, item)
    _add(report, roles_item(settings, peer_settings, (settings.region, settings.peer_region)))
    try:
        runs = drills.history(outputs)
    except AWS_ERRORS as exc:
        runs = {}
        _add(report, Check(rules.DRILL, "skip", f"s3://{outputs.config_bucket}/{drills.PREFIX}: {one_line(exc)}"))
    else:
        _add(report, rules.last_drill(drills.newest(runs), f"s3://{outputs.config_bucket}/{drills.PREFIX}"))
    region_runs = runs.get(SCENARIO) or []
    est = estimate(settings, region_runs[-1] if region_runs else None, replica_seconds, mirror_seconds)
    report.measured.update(stack=settings.stack, pair=[settings.stack, settings.peer_stack], at=now.isoformat())
    return Readiness(report, est, runs)
