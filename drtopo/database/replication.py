"""Replica lag and replay position: how much data a promotion now would lose, and waiting until none.

PostgreSQL: bytes = the primary's current WAL position minus what the standby replayed; seconds = 0 when the standby
has replayed everything, else the age of the newest transaction it replayed (`pg_last_xact_replay_timestamp()`),
which bounds the window of writes a promotion would drop. With the primary unreachable only the standby's side is
known: the bound comes from when the standby last heard from the primary (`drtopo.database.loss_bound`), bytes are
unknown. RDS: CloudWatch `ReplicaLag`, read by the same module's rule when the source is unreachable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from drtopo.aws import client
from drtopo.database.loss_bound import (
    Bound,
    LiveReceiver,
    StandbyState,
    cloudwatch_bound,
    last_stream_end,
    stream_bound,
)

# The standby server's own log, its last lines (None when it cannot be read), for the record of its last contact.
ServerLog = Callable[[psycopg.Connection], Iterable[str] | None]


@dataclass(frozen=True)
class Lag:
    seconds: float | None
    bytes: int | None
    source: str
    detail: str = ""
    # With the primary unreachable: which kind of bound `seconds` is (loss_bound.BoundKind) and the last contact.
    bound: str = ""
    last_contact: str | None = None

    @classmethod
    def unreachable(cls, bound: Bound, detail: str = "") -> Lag:
        contact = bound.last_contact.isoformat() if bound.last_contact else None
        return cls(
            bound.seconds, None, f"primary unreachable: {bound.kind}", bound.detail + detail, bound.kind, contact
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StandbyPosition:
    in_recovery: bool
    receive_lsn: str | None
    replay_lsn: str | None
    last_replay_age_seconds: float | None
    replay_paused: bool


def standby_position(conn: psycopg.Connection) -> StandbyPosition:
    row = conn.execute(
        "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
        " extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8,"
        " CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() <> 'not paused' ELSE false END"
    ).fetchone()
    return StandbyPosition(*row)


def current_lsn(primary: psycopg.Connection) -> str:
    return primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def lsn_diff(conn: psycopg.Connection, a: str, b: str) -> int:
    """Bytes from `b` to `a` (computed by the server, which knows the LSN arithmetic)."""
    return int(conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (a, b)).fetchone()[0])


def pg_lag(
    standby: psycopg.Connection,
    primary: psycopg.Connection | None,
    settle_seconds: float = 1.0,
    server_log: ServerLog | None = None,
    now: datetime | None = None,
) -> Lag:
    """Replay lag of a streaming standby; `primary` None when it is unreachable.

    With the primary reachable, the standby gets `settle_seconds` to replay up to the primary's position at the
    time of measuring, so that WAL in flight (milliseconds on a healthy link) does not count as lag. Without it, the
    bound of `loss_bound.stream_bound` from what the standby kept and its `server_log`; `now` (default the clock)
    only ages a standby that has no record of its last contact.
    """
    pos = standby_position(standby)
    if not pos.in_recovery:
        return Lag(0.0, 0, "standby is already promoted", "not in recovery")
    if primary is None:
        return _unreachable_lag(standby, pos, server_log, now or datetime.now(UTC))
    target = current_lsn(primary)
    deadline = time.monotonic() + settle_seconds
    while True:
        behind = lsn_diff(primary, target, pos.replay_lsn or "0/0")
        if behind <= 0:
            return Lag(0.0, 0, "primary WAL position vs standby replay", f"replayed up to {target}")
        if pos.replay_paused or time.monotonic() > deadline:
            break
        time.sleep(0.02)
        pos = standby_position(standby)
    paused = " (replay paused)" if pos.replay_paused else ""
    seconds, source = pos.last_replay_age_seconds, "seconds since the standby's last replayed commit"
    if seconds is None:
        # No commit replayed since the standby started: the primary's own measure of this standby's delay.
        row = primary.execute(
            "SELECT max(extract(epoch FROM replay_lag))::float8 FROM pg_stat_replication WHERE state = 'streaming'"
        ).fetchone()
        seconds, source = row[0], "replay_lag in the primary's pg_stat_replication"
    return Lag(
        seconds,
        behind,
        f"primary WAL position vs standby replay; {source}",
        f"standby replayed {pos.replay_lsn}, {behind} bytes behind {target} after {settle_seconds:g} s{paused}",
    )


def _unreachable_lag(
    standby: psycopg.Connection, pos: StandbyPosition, server_log: ServerLog | None, now: datetime
) -> Lag:
    unreplayed = lsn_diff(standby, pos.receive_lsn, pos.replay_lsn) if pos.receive_lsn and pos.replay_lsn else None
    last_commit = standby.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()[0]
    state = StandbyState(pos.receive_lsn, pos.replay_lsn, unreplayed, last_commit)
    row = standby.execute(
        "SELECT status, last_msg_send_time, last_msg_receipt_time,"
        " pg_wal_lsn_diff(latest_end_lsn, flushed_lsn)::bigint FROM pg_stat_wal_receiver"
    ).fetchone()
    live = LiveReceiver(*row) if row is not None else None
    lines = server_log(standby) if server_log is not None else None
    end = None
    if lines is not None:
        try:
            zone = ZoneInfo(standby.execute("SHOW log_timezone").fetchone()[0])
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
        end = last_stream_end(lines, zone) if zone is not None else None
    paused = " (replay paused)" if pos.replay_paused else ""
    return Lag.unreachable(stream_bound(state, end, live, now), paused)


def replica_lag_points(instance_id: str, region: str, window_seconds: int) -> list[tuple[datetime, float]]:
    """CloudWatch `ReplicaLag` of an RDS read replica, (minute, Maximum) over the last `window_seconds`."""
    end = datetime.now(UTC)
    stats = client("cloudwatch", region).get_metric_statistics(
        Namespace="AWS/RDS",
        MetricName="ReplicaLag",
        Dimensions=[{"Name": "DBInstanceIdentifier", "Value": instance_id}],
        StartTime=end - timedelta(seconds=window_seconds),
        EndTime=end,
        Period=60,
        Statistics=["Maximum"],
    )
    return [(p["Timestamp"], float(p["Maximum"])) for p in stats.get("Datapoints") or []]


def rds_replica_lag(instance_id: str, region: str, window_seconds: int = 300) -> Lag:
    """The highest CloudWatch `ReplicaLag` of an RDS read replica over the last `window_seconds`."""
    points = replica_lag_points(instance_id, region, window_seconds)
    if not points:
        return Lag(
            None, None, "CloudWatch ReplicaLag", f"no datapoints for {instance_id} in the last {window_seconds} s"
        )
    return Lag(max(lag for _, lag in points), None, "CloudWatch ReplicaLag", f"{len(points)} datapoints, max")


def rds_replica_bound(instance_id: str, region: str, window_seconds: int = 3 * 3600) -> Lag:
    """The bound of `loss_bound.cloudwatch_bound` over the last `window_seconds` (its source unreachable)."""
    return Lag.unreachable(cloudwatch_bound(replica_lag_points(instance_id, region, window_seconds), 60))


def worst(lags: list[Lag]) -> Lag:
    """The most pessimistic of several measurements (unknown seconds count as worst)."""
    return max(lags, key=lambda lag: float("inf") if lag.seconds is None else lag.seconds)


def wait_replayed(standby: psycopg.Connection, lsn: str, timeout: float) -> float:
    """Wait until the standby has replayed up to `lsn`; returns the seconds waited."""
    start = time.monotonic()
    while True:
        pos = standby_position(standby)
        if not pos.in_recovery:
            raise TimeoutError("it is not in recovery, so it replays nothing")
        if pos.replay_lsn and lsn_diff(standby, pos.replay_lsn, lsn) >= 0:
            return time.monotonic() - start
        if pos.replay_paused:
            raise TimeoutError(f"standby replay is paused at {pos.replay_lsn}; resume it with pg_wal_replay_resume()")
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"standby replayed {pos.replay_lsn}, not {lsn}, within {timeout:.0f} s")
        time.sleep(0.05)
