"""The data-loss bound of a promotion whose old primary does not answer: computed from when the standby last heard
from it, never from the age of its last commit, so the time an operator takes to decide does not change it.

What PostgreSQL 15 keeps after the sender dies (checked on the lab's servers and in the source): the
`pg_stat_wal_receiver` view shows a row only while a WAL receiver runs (`WHERE s.pid IS NOT NULL`); the receiver
exits at once with `FATAL: could not receive data from WAL stream: ...`, the startup process starts a new one every
`wal_retrieve_retry_interval` (5 s), which fails to connect and exits again, and a new receiver resets the last
message times to its own start. So the live view cannot say when the standby last heard from a dead primary; the
standby's own server log can: its line `could not receive data from WAL stream` (or `replication terminated by
primary server`, or `terminating walreceiver due to timeout`) carries the time the stream ended and how.
`pg_last_wal_receive_lsn()` (the end of what was received and flushed) and the last replayed commit's timestamp
survive in the server.

The rule (`stream_bound`): the primary committed nothing the standby lacks before the last commit it replayed (C),
and a primary that closed the replication connection committed nothing after the moment the stream ended (D); so a
promotion loses at most the writes of the window (C, D], whatever the clock says when promote runs. With a busy
primary D - C is the replication delay at the crash; with a quiet one it is longer than what was lost (nothing was
committed after C): an honest, fixed, loose bound. D is the standby's clock, C the primary's: clock skew between the
regions adds to it (clamped at 0). WAL received but not yet replayed is replayed by the promotion, not lost.

Which kind of bound it is (`BoundKind`) is reported: only a connection closed by the primary's side says the
primary stopped (a process or host that ended, whose kernel closed the socket; a proxy that resets connections
looks the same, which is why the lease of issue 26 is the proof). A stream that timed out, a receiver still
streaming, or no record at all leave open that a cut-off primary still commits: then the bound is the measurable
part only, said so.

RDS (`cloudwatch_bound`): a replica's CloudWatch `ReplicaLag` for PostgreSQL is `extract(epoch from now() -
pg_last_xact_replay_timestamp())` (Amazon RDS User Guide, "Monitoring and tuning the replication process",
USER_PostgreSQL.Replication.ReadReplicas.Monitor). Once the source stops shipping, it therefore grows one second per
second of the clock: the datapoints from then on are that growth, not the delay. The bound is the largest
`ReplicaLag` of the datapoints before that run began (the delay while the source still shipped); CloudWatch cannot
tell a stopped source from a cut-off one, so the kind is always the unknown one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum


class BoundKind(StrEnum):
    """What a reported bound is, in words an on-call engineer can act on."""

    STOPPED = "received-to-replayed at last contact (primary stopped)"
    UNKNOWN = "unknown: primary may still be committing (no lease; partition cannot be ruled out)"
    LEASE = "proven by the lease: the old primary fenced itself when its lease ran out, before this promotion"
    NO_RECORD = (
        "no record of the last contact: seconds since the standby's last replayed commit, an upper bound only if "
        "the primary stopped, and it grows while you wait"
    )


@dataclass(frozen=True)
class StreamEnd:
    """The standby's record of how its replication stream ended (its server log)."""

    at: datetime
    closed_by_primary: bool
    line: str


@dataclass(frozen=True)
class LiveReceiver:
    """The standby's `pg_stat_wal_receiver` row, when a receiver runs."""

    status: str
    last_msg_send_time: datetime | None
    last_msg_receipt_time: datetime | None
    behind_latest_end_bytes: int | None  # latest_end_lsn - flushed_lsn: what the sender had and the standby not


@dataclass(frozen=True)
class StandbyState:
    """What survives in the standby server: the end of what it received, what it replayed, its last commit."""

    receive_lsn: str | None
    replay_lsn: str | None
    unreplayed_bytes: int | None
    last_commit: datetime | None


@dataclass(frozen=True)
class Bound:
    seconds: float | None
    kind: BoundKind
    last_contact: datetime | None
    detail: str


# The lines a PostgreSQL 15 WAL receiver logs when its stream ends (walreceiver.c, libpqwalreceiver.c), and the
# ones that start a stream or the server (after which an earlier end no longer describes the current state).
_ENDED = ("could not receive data from WAL stream", "replication terminated by primary server")
_TIMED_OUT = "terminating walreceiver due to timeout"
_STARTED = ("started streaming WAL", "starting PostgreSQL")
# Messages of a connection the primary's side closed (its process or host ended and the kernel closed the socket).
_CLOSED = (
    "server closed the connection",
    "replication terminated by primary server",
    "connection reset by peer",
    "eof detected",
    "unexpected eof",
)
_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?)(?: (\S+))? ")


def _stamp(line: str, zone: tzinfo) -> datetime | None:
    match = _STAMP.match(line)
    if match is None:
        return None
    return datetime.fromisoformat(match.group(1)).replace(tzinfo=zone)


def last_stream_end(lines: Iterable[str], zone: tzinfo) -> StreamEnd | None:
    """The end of the standby's current replication stream in its server log (`log_line_prefix` starting with `%m`
    or `%t`, the default since PostgreSQL 10; times in `zone`, the server's `log_timezone`), or None when the log
    says the stream runs, or says nothing."""
    end: StreamEnd | None = None
    for line in lines:
        if any(mark in line for mark in _STARTED):
            end = None
            continue
        ended = any(mark in line for mark in _ENDED)
        if not ended and _TIMED_OUT not in line:
            continue
        at = _stamp(line, zone)
        if at is None:
            continue
        # Only the first end after a start counts: the receivers restarted every few seconds fail to connect.
        if end is None:
            closed = ended and any(mark in line.lower() for mark in _CLOSED)
            end = StreamEnd(at=at, closed_by_primary=closed, line=line.strip())
    return end


def _received(state: StandbyState) -> str:
    kept = f" ({state.unreplayed_bytes} bytes still to replay, kept on promotion)" if state.unreplayed_bytes else ""
    return f"standby received {state.receive_lsn}, replayed {state.replay_lsn}{kept}"


def stream_bound(state: StandbyState, end: StreamEnd | None, live: LiveReceiver | None, now: datetime) -> Bound:
    """The data-loss bound of promoting this standby now, its primary unreachable (pure: `now` is only the age
    shown for a standby that has no record of its last contact)."""
    commit = state.last_commit.isoformat() if state.last_commit else "none replayed since the standby started"
    received = _received(state)
    if live is not None and live.status == "streaming":
        # The standby still hears from the primary: it is alive and only cut off from here.
        contact = live.last_msg_receipt_time
        behind = live.behind_latest_end_bytes or 0
        seconds = None
        if contact is not None and live.last_msg_send_time is not None:
            seconds = max(0.0, (contact - live.last_msg_send_time).total_seconds())
            if behind > 0 and state.last_commit is not None:
                seconds = max(0.0, (contact - state.last_commit).total_seconds())
        return Bound(
            seconds,
            BoundKind.UNKNOWN,
            contact,
            f"the standby's WAL receiver still streams from the primary (last message received "
            f"{contact.isoformat() if contact else 'never'}, {behind} bytes behind what the primary reported): the "
            f"primary is alive and reachable from the standby, so it may still take writes; {received}",
        )
    if end is None:
        seconds = (now - state.last_commit).total_seconds() if state.last_commit else None
        return Bound(
            seconds,
            BoundKind.NO_RECORD,
            None,
            f"no end of the replication stream in the standby's log; last replayed commit {commit}; {received}",
        )
    seconds = max(0.0, (end.at - state.last_commit).total_seconds()) if state.last_commit else None
    how = "the primary's side closed the replication connection" if end.closed_by_primary else "the stream ended"
    window = f"writes committed after {commit} up to {end.at.isoformat()}"
    if end.closed_by_primary:
        return Bound(
            seconds,
            BoundKind.STOPPED,
            end.at,
            f"last contact {end.at.isoformat()}: {how} ({end.line}); at most the {window} are lost; {received}",
        )
    return Bound(
        seconds,
        BoundKind.UNKNOWN,
        end.at,
        f"last contact {end.at.isoformat()}: {how} without the primary closing it ({end.line}), so a cut-off "
        f"primary may have gone on committing; measurable part: the {window}; {received}",
    )


def cloudwatch_bound(points: Sequence[tuple[datetime, float]], period_seconds: float) -> Bound:
    """The bound from a replica's CloudWatch `ReplicaLag` datapoints (time, Maximum), its source unreachable (pure).

    The run of datapoints at the end of the series whose lag grows with the clock (by at least half the time since
    the one before: a source that ships keeps the lag flat, a silent one adds every second) is the source's silence;
    the largest lag of the datapoints up to the first of that run is the delay while the source still shipped. A
    source that committed nothing for longer than the window looks silent too: then the bound is the lag of the
    window's first datapoint, which overstates the loss, never understates it."""
    ordered = sorted(points)
    if not ordered:
        return Bound(None, BoundKind.UNKNOWN, None, "no ReplicaLag datapoints: nothing measured")
    start = len(ordered) - 1
    while start > 0:
        (t0, lag0), (t1, lag1) = ordered[start - 1], ordered[start]
        if lag1 - lag0 < (t1 - t0).total_seconds() / 2:
            break
        start -= 1
    recent = ordered[max(0, start - 4) : start + 1]
    seconds = max(lag for _, lag in recent)
    contact = recent[-1][0] + timedelta(seconds=period_seconds)
    silent = len(ordered) - 1 - start
    return Bound(
        seconds,
        BoundKind.UNKNOWN,
        contact,
        f"CloudWatch ReplicaLag: at most {seconds:g} s over the {len(recent)} datapoints up to "
        f"{recent[-1][0].isoformat()}"
        + (f", then {silent} datapoints growing with the clock (the source silent)" if silent else "")
        + "; CloudWatch cannot tell a stopped source from a cut-off one",
    )
