"""A database is a type: the one protocol the failover and the restores ask of a stack's database, whatever runs it.

One implementation per platform, each in its own file (as Patroni's `patroni/dcs/`): `rds` (the RDS control plane),
`self_managed` (a PostgreSQL server whose files are on this host) and `paired` (the lab: the emulator's RDS instance
and a real server, both halves in turn). `drtopo.database.database_for` picks one from the stack outputs, once.
What every platform shares lives here too: the errors, and what any PostgreSQL endpoint answers (a session, the
write probe, the streaming replay lag).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import psycopg
from psycopg import sql

from drtopo.database.connect import connect
from drtopo.database.pitr import cutover
from drtopo.database.pitr.recovery import ArchiveCopy
from drtopo.database.pitr.request import PitrRequest
from drtopo.database.pitr.window import Shown
from drtopo.database.replication import Lag, ServerLog, pg_lag, worst
from drtopo.errors import one_line
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report
from drtopo.settings import Settings

PROBE = "CREATE TABLE drtopo_fence_probe (id int)"


class StandbyError(RuntimeError):
    """A promotion or rebuild did not reach its end state."""


class FenceError(RuntimeError):
    """The old primary is reachable and still accepts (or may accept) writes."""


class Database(Protocol):
    """A stack's database as the failover and the restores use it; which platform runs it is its own business."""

    @property
    def outputs(self) -> StackOutputs:
        """The stack outputs it was made from (those of its generation, see `generation`)."""
        ...

    def reachable(self) -> bool:
        """Whether it answers now: its server takes a session (RDS alone: its control plane says available)."""
        ...

    def rebuildable_when_down(self) -> bool:
        """Whether a failback can rebuild it although it does not answer: its server's files are here (a data
        directory with PG_VERSION), or the RDS API of its region answers."""
        ...

    def open_for_reading(self) -> bool:
        """Make it answer, for reading what it holds before a rebuild: a server that is down with its files here is
        started with writes refused (`default_transaction_read_only` on its command line); True when it answers."""
        ...

    def require_replica(self) -> None:
        """Unsafe ("target not ready") unless it is a replica that a promotion can make the primary."""
        ...

    def lag(self, primary: Database | None) -> Lag:
        """How much a promotion now would lose: the worst of what can be measured against `primary` (None or not
        answering: from its own side only)."""
        ...

    def fence(self) -> dict[str, Any]:
        """Make it, which the caller found reachable, refuse writes and prove that a new write is refused;
        FenceError when it cannot be fenced."""
        ...

    def promote(self, lift_lease_fence: bool = False) -> dict[str, Any]:
        """Make it the writable primary; StandbyError when it does not get there. `lift_lease_fence`: the primary
        lease is on and promote holds it for this stack, so a read-only default set on the database itself (the old
        primary's guard's ALTER DATABASE, which replication brought here) is a fence no longer owed: it is lifted
        before the database counts as writable (where the platform waits for that), never any other read-only."""
        ...

    def rebuild(self, source: Database, settings: Settings, deployed: str | None = None) -> dict[str, Any]:
        """Make it (its stack described by `settings`) a replica of `source`; `deployed`: the instance its stack's
        outputs named when the run started."""
        ...

    def protect(self, name: str) -> dict[str, Any]:
        """Right after its promotion, its own protection on the new timeline: a base backup called `name` (its
        server: a tar base backup in its base backup folder, `base_backup_dir`; RDS: a manual snapshot) and proof
        that continuous archiving runs (a switched WAL segment archived, `archived_wal`; RDS: automated backups on).
        StandbyError when either cannot be had."""
        ...

    def generation(self, settings: Settings, generation: int | None = None, refresh: bool = False) -> Database:
        """It as the RDS instance of `generation` (default: the one `settings` declare now) rather than the one the
        stack last deployed; `refresh`: read the live instance's address again (e.g. once created)."""
        ...

    def restorer(self, rds: bool = False) -> Database:
        """The database whose own means restore it to a point in time: RDS restore-to-time, or base backup + WAL
        on its server; `rds` asks for the RDS one where both exist."""
        ...

    def check_restore(self, request: PitrRequest) -> None:
        """BadInput naming a flag of `request` that is for another platform's restore."""
        ...

    def restore_title(self, request: PitrRequest) -> str:
        """What the restore step is called in the timings, e.g. `RDS`."""
        ...

    def window(self, report: Report, copy: ArchiveCopy | None = None) -> Shown:
        """The restorable window, checked and recorded in `report` (of `copy` alone, a local copy of another
        archive of its server, when given), and what a restore to a time in it would use."""
        ...

    def restore(
        self, request: PitrRequest, report: Report, clock: Clock, copy: ArchiveCopy | None = None
    ) -> dict[str, Any]:
        """Restore to `request.time` into a new instance (from `copy` alone when given); returns where it is."""
        ...

    def cutover(
        self,
        request: PitrRequest,
        report: Report,
        clock: Clock,
        peer: Callable[[], Database | None] = ...,
        steps: cutover.Steps | None = None,
    ) -> list[str]:
        """Corruption recovery end to end: restore to T, re-apply the writes after T (never the damage), fence,
        validate, swap the restored instance into the damaged one's place; `peer()`: the peer stack's database,
        whose standby then follows; `steps` runs each step (journalled, or not when None). Returns the lines to
        show (a dry run's rows)."""
        ...

    def follow(self, source: Database, report: Report, clock: Clock) -> None:
        """After a cutover of `source`: rebuild its standby server as one of `source` and wait until it has
        replayed `source`'s position (a check in `report`; a skip when there is no such server here)."""
        ...


def reachable(outputs: StackOutputs) -> bool:
    """Whether `outputs`' endpoint takes a session."""
    try:
        with connect(outputs):
            return True
    except psycopg.OperationalError:
        return False


# pg_settings.source of a read-only default set by ALTER DATABASE: the lease's fence (drtopo/fencing/fence.py).
LEASE_FENCE_SOURCE = "database"
READ_ONLY_DEFAULT = """
SELECT pg_is_in_recovery(), setting = 'on', source FROM pg_settings WHERE name = 'default_transaction_read_only'
"""


def lease_fence_to_lift(in_recovery: bool, read_only: bool, source: str, lift_lease_fence: bool) -> bool:
    """Whether a writability wait lifts the read-only default a new session started with: only when asked (the lease
    on, held for this stack), only out of recovery (a promoted server), and only the default set on the database
    itself, the lease guard's; one from the server's configuration, its command line or a role is someone else's
    fence and is waited on, not lifted (pure)."""
    return lift_lease_fence and not in_recovery and read_only and source == LEASE_FENCE_SOURCE


def lift_database_read_only(conn: psycopg.Connection, db_name: str) -> None:
    """ALTER DATABASE ... RESET default_transaction_read_only: the lease guard's fence, undone (`conn` autocommit)."""
    # The session itself starts read-only under the fence it lifts.
    conn.execute("SET default_transaction_read_only = off")
    conn.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(sql.Identifier(db_name)))


def wait_writable(outputs: StackOutputs, timeout_s: float, poll_s: float = 2.0) -> float | None:
    """The wall time at which a new session on `outputs`' endpoint may first write (not in recovery, not read-only by
    default), polled every `poll_s`; None when it did not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with connect(outputs) as conn:
                row = conn.execute(
                    "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')"
                ).fetchone()
            if row is not None and not row[0] and row[1] == "off":
                return time.time()
        except psycopg.OperationalError:
            pass  # the endpoint moves to the renamed instance; its name resolves again shortly
        if time.monotonic() + poll_s > deadline:
            return None
        time.sleep(poll_s)


@contextlib.contextmanager
def session(outputs: StackOutputs) -> Iterator[psycopg.Connection | None]:
    """A session on `outputs`' endpoint, or None when it does not answer."""
    try:
        conn = connect(outputs)
    except psycopg.OperationalError:
        yield None
        return
    with conn:
        yield conn


def prove_read_only(outputs: StackOutputs) -> str:
    """Try a write from a new session; returns how it was refused, raises FenceError if it went through."""
    with connect(outputs, autocommit=False) as conn:
        try:
            conn.execute(PROBE)
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            conn.rollback()
            return f"write refused: {one_line(exc)}"
        conn.rollback()
    raise FenceError(f"{outputs.db_address}:{outputs.db_port} still accepts writes after fencing")


def streaming_lag(
    standby: StackOutputs, primary: StackOutputs | None, server_log: ServerLog | None = None
) -> list[Lag]:
    """The replay lag of `standby`'s server against `primary`'s WAL position ([] when the standby does not answer;
    from its own side only when the primary does not, with its `server_log` when the platform can read it)."""
    with session(standby) as standby_conn, _maybe_session(primary) as primary_conn:
        return [] if standby_conn is None else [pg_lag(standby_conn, primary_conn, server_log=server_log)]


@contextlib.contextmanager
def _maybe_session(outputs: StackOutputs | None) -> Iterator[psycopg.Connection | None]:
    if outputs is None:
        yield None
        return
    with session(outputs) as conn:
        yield conn


def measured(lags: list[Lag]) -> Lag:
    """The worst of the lags measured, or a lag of unknown size when nothing was measurable."""
    return worst(lags) if lags else Lag(None, None, "nothing measurable")
