"""The readiness rules: pure functions of a measured value and its limit, each returning one item (a `Check`).

An item that could not be measured is at risk (FAIL) when the measurement is the point of the item (replica lag,
MirrorMaker lag, the newest dump); it is a SKIP, with its reason, only where nothing is recorded yet that the item
could judge (no restore test, no checkpoint, no drill report). A SKIP is never a pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from drtopo.failover.marker import RoleMarker
from drtopo.kafka.admin import Partition
from drtopo.report import FAIL, PASS, SKIP, Check

# How often each tier receives a dump (drtopo.tiers: daily every day, weekly on Sundays, monthly on the 1st, yearly on
# 1 January), so the newest dump of a tier may be this old before a run was missed.
TIER_INTERVAL = {
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=31),
    "yearly": timedelta(days=366),
}
# The dump job's own run time on top of its interval: a dump taken at 02:15 lands a little after 02:15 the next day.
DUMP_GRACE = timedelta(hours=1)

REPLICA_LAG = "replica.lag"
DUMP_AGE = "dump.age"
RESTORE_TEST = "dump.restore_test"
WAL_CHAIN = "wal.chain"
WAL_AGE = "wal.age"
MIRROR_LAG = "mirror.lag"
CHECKPOINT_AGE = "mirror.checkpoint_age"
ROLES = "roles"
DRILL = "drill.last"
ITEMS = (REPLICA_LAG, DUMP_AGE, RESTORE_TEST, WAL_CHAIN, WAL_AGE, MIRROR_LAG, CHECKPOINT_AGE, ROLES, DRILL)


def at_most(name: str, value: float | None, limit: float, detail: str, unmeasured: str) -> Check:
    """PASS when `value` <= `limit`; FAIL when it is beyond, or unmeasured (`unmeasured` says why)."""
    if value is None:
        return Check(name, FAIL, f"not measurable: {unmeasured}", None, limit)
    return Check(name, PASS if value <= limit else FAIL, detail, round(value, 3), limit)


def replica_lag(seconds: float | None, rpo_seconds: float, detail: str) -> Check:
    """The standby's replay lag against the region-failure RPO: what a promotion now would lose."""
    return at_most(REPLICA_LAG, seconds, rpo_seconds, f"{detail} (limit: the region-failure RPO)", detail)


def dump_age_limit(tier: str) -> float:
    """Seconds the newest dump of `tier` may be old: the tier's interval plus the job's grace."""
    return (TIER_INTERVAL[tier] + DUMP_GRACE).total_seconds()


def dump_age(age_seconds: float | None, tier: str, key: str, bucket: str) -> Check:
    """The newest dump's age against the interval of its tier (the daily tier: one day and the grace)."""
    limit = dump_age_limit(tier)
    if age_seconds is None:
        return Check(DUMP_AGE, FAIL, f"no dump in s3://{bucket}; run `python -m scripts.backup run`", None, limit)
    return at_most(DUMP_AGE, age_seconds, limit, f"{key} in s3://{bucket} (limit: the {tier} tier's interval)", "")


def restore_test(record: Mapping[str, Any] | None, now: datetime) -> Check:
    """The newest recorded restore test (`scripts.backup restore-test`): SKIP when none is recorded."""
    if record is None:
        return Check(
            RESTORE_TEST, SKIP, "no restore test recorded; `python -m scripts.backup restore-test` records one"
        )
    at = datetime.fromisoformat(str(record["at"]))
    age = round((now - at).total_seconds())
    ok = bool(record.get("ok"))
    what = "every check passed" if ok else "a check failed"
    return Check(RESTORE_TEST, PASS if ok else FAIL, f"{record.get('key')} restored at {record['at']}: {what}", age)


def wal_chain(gaps: list[str] | None, detail: str) -> Check:
    """The WAL archive's chain from its oldest base backup: no missing segment (None: no base backup at all)."""
    if gaps is None:
        return Check(WAL_CHAIN, FAIL, detail, None, 0)
    return Check(WAL_CHAIN, PASS if not gaps else FAIL, detail, len(gaps), 0)


def wal_age(age_seconds: float | None, rpo_seconds: float, bucket: str, unreadable: str = "") -> Check:
    """The newest archived WAL file's age against the region-failure RPO: a restore from the bucket loses that much."""
    return at_most(
        WAL_AGE,
        age_seconds,
        rpo_seconds,
        f"newest file in s3://{bucket}/wal/ (limit: the region-failure RPO)",
        unreadable or f"s3://{bucket}/wal/ holds no file",
    )


def mirror_lag(
    records: Mapping[str, int] | None,
    seconds: Mapping[str, float | None],
    max_records: int,
    rpo_seconds: float,
    unmeasured: str,
) -> Check:
    """MirrorMaker's lag: records behind per topic within `max_records` (the mirror's offset lag bound) and the
    oldest record not yet copied younger than the Kafka-failure RPO. Value: records behind, worst topic."""
    limit = f"<= {max_records} records, <= {rpo_seconds:g} s"
    if records is None:
        return Check(MIRROR_LAG, FAIL, f"not measurable: {unmeasured}", None, limit)
    worst_topic = max(records, key=lambda t: records[t], default=None)
    behind = records[worst_topic] if worst_topic is not None else 0
    ages = [s for s in seconds.values() if s is not None]
    oldest = max(ages, default=0.0)
    ok = behind <= max_records and oldest <= rpo_seconds
    detail = (
        f"worst {worst_topic}: {behind} records behind, the oldest not copied {oldest:.1f} s old"
        if behind
        else f"every one of {len(records)} topics caught up"
    )
    return Check(MIRROR_LAG, PASS if ok else FAIL, detail, behind, limit)


def checkpoint_age(
    checkpoints: Mapping[Partition, tuple[int, float]],
    committed: Mapping[Partition, int],
    now: float,
    rpo_seconds: float,
    where: str,
) -> Check:
    """MirrorMaker's checkpoints of the consumer group (partition -> (upstream offset, time written, s)) against the
    group's commits on the source: current when every committed partition has a checkpoint at its committed offset
    (MirrorMaker writes one only when the offset moves, so an idle group's checkpoint may be old and still current);
    when one is behind, the newest checkpoint's age must be within the Kafka-failure RPO. SKIP while the group has
    committed nothing on the source (no offset a failover would translate)."""
    if not committed:
        return Check(CHECKPOINT_AGE, SKIP, f"the group has committed nothing on the source; {where}", None, rpo_seconds)
    newest = max((at for _, at in checkpoints.values()), default=None)
    age = None if newest is None else round(max(0.0, now - newest), 3)
    behind = sorted(p for p, offset in committed.items() if p not in checkpoints or checkpoints[p][0] < offset)
    if not behind:
        detail = f"{len(committed)} committed partitions, every checkpoint at its commit ({where})"
        return Check(CHECKPOINT_AGE, PASS, detail, age, rpo_seconds)
    first = f"{behind[0].topic}[{behind[0].partition}]"
    detail = (
        f"{len(behind)} of {len(committed)} committed partitions ahead of their checkpoint, first {first} ({where})"
    )
    if age is None:
        return Check(CHECKPOINT_AGE, FAIL, f"no checkpoint at all: {detail}", None, rpo_seconds)
    return Check(CHECKPOINT_AGE, PASS if age <= rpo_seconds else FAIL, detail, age, rpo_seconds)


def roles(configured: Mapping[str, str], marker: RoleMarker | None, marker_where: str) -> Check:
    """Both stacks' configured roles: one primary and one standby, and the role marker (when written) agreeing."""
    shown = ", ".join(f"{s} {r}" for s, r in sorted(configured.items()))
    wrong = sorted(configured.values()) != ["primary", "standby"]
    problems = [f"the stack files say {shown}; expected one primary and one standby"] if wrong else []
    if marker is not None:
        for stack, role in sorted(configured.items()):
            said = marker.role_of(stack)
            if said is not None and said.value != role:
                problems.append(f"Pulumi.{stack}.yaml says {role} but the marker {marker_where} says {said.value}")
        where = f"marker {marker_where}: {marker.describe()}"
    else:
        where = "no role marker written yet (no promote has run)"
    if problems:
        return Check(ROLES, FAIL, "; ".join(problems), shown, "one primary, one standby, as the marker says")
    return Check(ROLES, PASS, f"{shown}; {where}", shown, "one primary, one standby, as the marker says")


def last_drill(newest: Mapping[str, Any] | None, where: str) -> Check:
    """The newest drill report in the configuration bucket: its result and date; SKIP when there is none."""
    if newest is None:
        return Check(DRILL, SKIP, f"no drill report in {where}; `python -m scripts.drill` records one there")
    scenarios = ", ".join(s["scenario"] for s in newest.get("scenarios", []))
    ok = bool(newest.get("ok"))
    result = "passed" if ok else "failed"
    return Check(DRILL, PASS if ok else FAIL, f"{scenarios} {result} at {newest.get('at')}", newest.get("at"), "ok")
