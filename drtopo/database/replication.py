"""Replica lag and replay position: how much data a promotion now would lose, and waiting until none.

PostgreSQL: bytes = the primary's current WAL position minus what the standby replayed; seconds = 0 when the standby
has replayed everything, else the age of the newest transaction it replayed (`pg_last_xact_replay_timestamp()`),
which bounds the window of writes a promotion would drop. With the primary unreachable only the standby's side is
known, so seconds come from its last replayed transaction and bytes are unknown. RDS: CloudWatch `ReplicaLag`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from drtopo.aws import client


@dataclass(frozen=True)
class Lag:
    seconds: float | None
    bytes: int | None
    source: str
    detail: str = ""

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


def pg_lag(standby: psycopg.Connection, primary: psycopg.Connection | None, settle_seconds: float = 1.0) -> Lag:
    """Replay lag of a streaming standby; `primary` None when it is unreachable.

    With the primary reachable, the standby gets `settle_seconds` to replay up to the primary's position at the
    time of measuring, so that WAL in flight (milliseconds on a healthy link) does not count as lag.
    """
    pos = standby_position(standby)
    if not pos.in_recovery:
        return Lag(0.0, 0, "standby is already promoted", "not in recovery")
    if primary is not None:
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
    paused = " (replay paused)" if pos.replay_paused else ""
    unreplayed = None
    if pos.receive_lsn and pos.replay_lsn:
        unreplayed = lsn_diff(standby, pos.receive_lsn, pos.replay_lsn)
    return Lag(
        pos.last_replay_age_seconds,
        None,
        "primary unreachable: seconds since the standby's last replayed commit (an upper bound)",
        f"standby received {pos.receive_lsn}, replayed {pos.replay_lsn}"
        + (f" ({unreplayed} bytes still to replay, kept on promotion)" if unreplayed else "")
        + paused,
    )


def rds_replica_lag(instance_id: str, region: str, window_seconds: int = 300) -> Lag:
    """The highest CloudWatch `ReplicaLag` of an RDS read replica over the last `window_seconds`."""
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
    points = stats.get("Datapoints") or []
    if not points:
        return Lag(
            None, None, "CloudWatch ReplicaLag", f"no datapoints for {instance_id} in the last {window_seconds} s"
        )
    return Lag(
        max(float(p["Maximum"]) for p in points), None, "CloudWatch ReplicaLag", f"{len(points)} datapoints, max"
    )


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
