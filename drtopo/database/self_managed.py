"""Self-managed PostgreSQL: a server whose files are on this host (the lab's), run with its own tools.

Promotion is `pg_promote()` and a write probe; a rebuild stops the server, `pg_rewind`s it to the source (else a fresh
`pg_basebackup`) keeping its own configuration, and starts it as a streaming standby. A fence is
`ALTER SYSTEM SET default_transaction_read_only = on`, reload, terminate every client session (so none keeps a
read-write transaction open), then a fresh session's write is refused: it stops applications, which do not override
the default, and writes no WAL, so the standby can still catch up to the fenced primary's final position. A
point-in-time restore replays base backup + WAL into a new data directory (`drtopo.database.pitr.recovery`).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from drtopo.database import reapply, replication
from drtopo.database.connect import connect, conninfo, password
from drtopo.database.pitr import cutover
from drtopo.database.pitr.labels import BaseBackup, choose_base_backup, find_base_backups
from drtopo.database.pitr.recovery import (
    ArchiveCopy,
    flush_archive,
    restore_self_managed,
    staging_dir,
    stop_instance,
    wait_promoted,
    window_self_managed,
)
from drtopo.database.pitr.request import PitrRequest
from drtopo.database.pitr.wal_names import check_wal_chain
from drtopo.database.pitr.window import Shown, show
from drtopo.database.platform import (
    READ_ONLY_DEFAULT,
    Database,
    FenceError,
    StandbyError,
    lease_fence_to_lift,
    lift_database_read_only,
    measured,
    prove_read_only,
    reachable,
    session,
    streaming_lag,
)
from drtopo.database.rds import RdsDatabase
from drtopo.database.replication import Lag
from drtopo.errors import one_line
from drtopo.outputs import SelfManagedPostgres, StackOutputs
from drtopo.report import BadInput, Clock, Report, Unsafe
from drtopo.settings import Settings

log = logging.getLogger(__name__)

# Kept across a rebuild: pg_rewind and pg_basebackup would bring the source's copies (its port, its name).
CONFIG_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")
# Settings a rebuild drops from postgresql.auto.conf before writing its own.
_REPLACED_SETTINGS = ("primary_conninfo", "primary_slot_name", "default_transaction_read_only")


# ---- promotion ---------------------------------------------------------------------------------------------------


def wait_writable(outputs: StackOutputs, timeout: float = 60, lift_lease_fence: bool = False) -> tuple[float, bool]:
    """Poll until a new session can get a transaction id and its default is read-write; returns seconds waited and
    whether the lease's fence was lifted on the way (`lift_lease_fence`: see `Database.promote`)."""
    start = time.monotonic()
    last = ""
    lifted = False
    while time.monotonic() - start < timeout:
        try:
            with connect(outputs) as conn:
                in_recovery, read_only, source = conn.execute(READ_ONLY_DEFAULT).fetchone()
                conn.execute("SELECT txid_current()")
                if not read_only:
                    return time.monotonic() - start, lifted
                if lease_fence_to_lift(in_recovery, read_only, source, lift_lease_fence):
                    lift_database_read_only(conn, outputs.db_name)
                    lifted = True
                    last = "default_transaction_read_only on (set on the database) after the lease's fence was lifted"
                else:
                    last = f"default_transaction_read_only is on (set by: {source})"
        except psycopg.Error as exc:
            last = one_line(exc)
        time.sleep(0.05)
    raise StandbyError(f"{outputs.db_address}:{outputs.db_port} not writable after {timeout:.0f} s: {last}")


def promote_postgres(outputs: StackOutputs, lift_lease_fence: bool = False) -> dict[str, Any]:
    with connect(outputs) as conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        if in_recovery and not conn.execute("SELECT pg_promote(true, 60)").fetchone()[0]:
            raise StandbyError(f"pg_promote() on {outputs.db_address}:{outputs.db_port} did not finish in 60 s")
        # A server fenced as an old primary keeps the setting in postgresql.auto.conf; as the primary it must go.
        unfence_postgres(conn)
    waited, lifted = wait_writable(outputs, lift_lease_fence=lift_lease_fence)
    with connect(outputs) as conn:
        timeline, lsn = conn.execute(
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int,"
            " pg_current_wal_lsn()::text"
        ).fetchone()
    return {
        "postgres": "pg_promote()" if in_recovery else "already out of recovery",
        "writable_after_seconds": round(waited, 3),
        "timeline": timeline,
        "lsn": lsn,
        **({"lease_fence": "lifted on the new primary in the writability wait"} if lifted else {}),
    }


# ---- fencing -----------------------------------------------------------------------------------------------------


def _wait_default_read_only(outputs: StackOutputs, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with connect(outputs) as conn:
            if conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on":
                return
        if time.monotonic() > deadline:
            raise FenceError("default_transaction_read_only is still off in new sessions after the reload")
        time.sleep(0.05)


def fence_postgres(outputs: StackOutputs) -> dict[str, Any]:
    try:
        with connect(outputs) as conn:
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
            _wait_default_read_only(outputs)
            terminated = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()[0]
    except psycopg.Error as exc:
        raise FenceError(
            f"cannot fence {outputs.db_address}:{outputs.db_port} as {outputs.db_user}: {one_line(exc)}"
        ) from None
    return {"method": "ALTER SYSTEM default_transaction_read_only + reload", "sessions_terminated": terminated}


def unfence_postgres(conn: psycopg.Connection) -> None:
    """Undo the fence on a server that has become (or is about to become) the primary."""
    conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
    conn.execute("SELECT pg_reload_conf()")


# ---- the server's own log -----------------------------------------------------------------------------------------


def server_log_path(sm: SelfManagedPostgres, conn: psycopg.Connection) -> Path | None:
    """The file the server logs to now: the logging collector's current file (`pg_current_logfile()`), else the
    file its postmaster's standard error goes to (`pg_ctl -l`, a service manager's redirect); None when neither is
    a file this host can read."""
    try:
        current = conn.execute("SELECT pg_current_logfile()").fetchone()[0]
    except psycopg.Error:
        current = None  # not granted (superuser or pg_monitor): the postmaster's stderr may still say
    if current:
        path = Path(current)
        return path if path.is_absolute() else Path(sm.data_dir) / path
    try:
        pid = int((Path(sm.data_dir) / "postmaster.pid").read_text().split()[0])
        target = Path(os.readlink(f"/proc/{pid}/fd/2"))
    except (OSError, ValueError, IndexError):
        return None
    return target if target.is_absolute() and target.is_file() else None


def server_log_tail(sm: SelfManagedPostgres, conn: psycopg.Connection, max_bytes: int = 4 << 20) -> list[str] | None:
    """The last `max_bytes` of the server's log as lines (None when it cannot be read): where a standby recorded
    when its replication stream ended (`drtopo.database.loss_bound`)."""
    path = server_log_path(sm, conn)
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError as exc:
        log.debug("server log %s unreadable: %s", path, exc)
        return None


# ---- rebuilt standbys --------------------------------------------------------------------------------------------


def _as_owner(sm: SelfManagedPostgres) -> dict[str, Any]:
    if os.geteuid() == 0 and sm.os_user:
        return {"user": sm.os_user, "group": sm.os_user, "extra_groups": []}
    return {}


def _run(sm: SelfManagedPostgres, argv: list[str], secret: str | None = None, timeout: float = 300) -> str:
    env = {**os.environ, "PGPASSWORD": secret} if secret else dict(os.environ)
    log.debug("run %s", " ".join(argv))  # the password goes by environment, never on a command line
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False, **_as_owner(sm))
    log.debug("%s exit %s: %s", Path(argv[0]).name, proc.returncode, (proc.stderr or proc.stdout).strip()[-2000:])
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StandbyError(f"{Path(argv[0]).name} failed ({proc.returncode}): {tail[0]}")
    return proc.stdout + proc.stderr


def _bin(sm: SelfManagedPostgres, name: str) -> str:
    return str(Path(sm.bin_dir) / name)


def _running(sm: SelfManagedPostgres) -> bool:
    proc = subprocess.run(
        [_bin(sm, "pg_ctl"), "status", "-D", sm.data_dir], capture_output=True, check=False, **_as_owner(sm)
    )
    return proc.returncode == 0


def _source_conninfo(source: StackOutputs) -> str:
    return psycopg.conninfo.make_conninfo(
        host=source.db_address, port=str(source.db_port), user=source.db_user, dbname="postgres"
    )


def standby_auto_conf(text: str, primary_conninfo: str) -> str:
    """postgresql.auto.conf for a standby: every setting kept but a fence or an old upstream, plus its new upstream."""
    kept = [line for line in text.splitlines() if line.split("=", 1)[0].strip() not in _REPLACED_SETTINGS]
    quoted = primary_conninfo.replace("\\", "\\\\").replace("'", "''")
    return "\n".join([*kept, f"primary_conninfo = '{quoted}'"]) + "\n"


def _restore_config(sm: SelfManagedPostgres, saved: dict[str, bytes], source: StackOutputs) -> None:
    data = Path(sm.data_dir)
    for name, content in saved.items():
        (data / name).write_bytes(content)
    auto = data / "postgresql.auto.conf"
    conninfo = psycopg.conninfo.make_conninfo(_source_conninfo(source), password=password(source) or "")
    auto.write_text(standby_auto_conf(auto.read_text() if auto.is_file() else "", conninfo))
    (data / "standby.signal").touch()
    owner = pwd.getpwnam(sm.os_user) if os.geteuid() == 0 else None
    for path in [auto, data / "standby.signal", *(data / n for n in saved)]:
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        path.chmod(0o600)


def rebuild_postgres(target: StackOutputs, source: StackOutputs, base_backup: bool = False) -> dict[str, Any]:
    """Make `target`'s server a streaming standby of `source`: stop it, pg_rewind (else pg_basebackup), start it.

    `base_backup` skips pg_rewind and copies the whole database (what the fallback costs: bench/scale.py)."""
    sm = target.self_managed
    if sm is None:
        raise StandbyError(f"outputs of {target.stack} have no selfManaged server to rebuild")
    data = Path(sm.data_dir)
    log = data.parent / f"{data.name}.log"
    if _running(sm):
        _run(sm, [_bin(sm, "pg_ctl"), "stop", "-D", sm.data_dir, "-m", "fast", "-w", "-t", "60"])
    saved = {name: (data / name).read_bytes() for name in CONFIG_FILES if (data / name).is_file()}
    secret = password(source)
    # pg_rewind reads the source's timeline from its control file, which a recently promoted server only updates
    # at its next checkpoint (PostgreSQL's pg_rewind documentation asks for one).
    with connect(source) as conn:
        conn.execute("CHECKPOINT")
    method = "pg_rewind"
    try:
        if base_backup:
            raise StandbyError("a base backup was asked for")
        detail = _run(
            sm,
            [_bin(sm, "pg_rewind"), f"--target-pgdata={sm.data_dir}", f"--source-server={_source_conninfo(source)}"],
            secret,
        )
        if "no rewind required" in detail:
            method = "pg_rewind (no rewind required)"
    except StandbyError as exc:
        method = f"pg_basebackup (pg_rewind failed: {exc})"
        for child in data.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        _run(
            sm,
            [
                _bin(sm, "pg_basebackup"),
                "-d",
                _source_conninfo(source),
                "-D",
                sm.data_dir,
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            secret,
        )
    _restore_config(sm, saved, source)
    _run(sm, [_bin(sm, "pg_ctl"), "start", "-D", sm.data_dir, "-l", str(log), "-w", "-t", "120"])
    return {"postgres": method, "log": str(log)}


# How long a switched WAL segment may take to reach the archive (and, through the archive command, the WAL bucket).
ARCHIVE_TIMEOUT_S = 60.0


def start_read_only(sm: SelfManagedPostgres) -> None:
    """Start a stopped server (crash recovery included) with every new transaction read-only: what it committed can
    be read, nothing new can be written (`-c` on the command line outranks its configuration files)."""
    data = Path(sm.data_dir)
    log = data.parent / f"{data.name}.log"
    start = [_bin(sm, "pg_ctl"), "start", "-D", sm.data_dir, "-l", str(log), "-w", "-t", "120"]
    _run(sm, [*start, "-o", "-c default_transaction_read_only=on"])


def take_base_backup(outputs: StackOutputs, folder: Path) -> str:
    """A tar base backup of `outputs`' server (`pg_basebackup -F t -X stream -c fast`, as the server's user) into
    the new folder `folder` (one of that name left by an interrupted run is replaced); returns the folder."""
    sm = outputs.self_managed
    if sm is None:
        raise StandbyError(f"outputs of {outputs.stack} have no selfManaged server to back up")
    if folder.exists():
        shutil.rmtree(folder)
    argv = [_bin(sm, "pg_basebackup"), "-d", _source_conninfo(outputs), "-D", str(folder)]
    _run(sm, [*argv, "-F", "t", "-X", "stream", "-c", "fast"], password(outputs))
    return str(folder)


# ---- the type ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfManagedDatabase:
    """A PostgreSQL server whose files are on this host; `server` says where (the outputs' `selfManaged`)."""

    outputs: StackOutputs
    server: SelfManagedPostgres

    def reachable(self) -> bool:
        return reachable(self.outputs)

    def rebuildable_when_down(self) -> bool:
        return (Path(self.server.data_dir) / "PG_VERSION").is_file()

    def open_for_reading(self) -> bool:
        if self.reachable():
            return True
        if not self.rebuildable_when_down() or _running(self.server):
            return False
        start_read_only(self.server)
        return self.reachable()

    def require_replica(self) -> None:
        with session(self.outputs) as conn:
            if conn is not None and not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                raise Unsafe(f"{self.outputs.stack}'s database is not a standby (not in recovery); target not ready")

    def lag(self, primary: Database | None) -> Lag:
        peer = primary.outputs if primary is not None else None
        return measured(streaming_lag(self.outputs, peer, lambda conn: server_log_tail(self.server, conn)))

    def fence(self) -> dict[str, Any]:
        result = fence_postgres(self.outputs)
        result["proof"] = prove_read_only(self.outputs)
        return result

    def promote(self, lift_lease_fence: bool = False) -> dict[str, Any]:
        return promote_postgres(self.outputs, lift_lease_fence)

    def rebuild(self, source: Database, settings: Settings, deployed: str | None = None) -> dict[str, Any]:
        return rebuild_postgres(self.outputs, source.outputs)

    def protect(self, name: str) -> dict[str, Any]:
        folder = Path(self.server.base_backup_dir) / name
        try:
            take_base_backup(self.outputs, folder)
            with connect(self.outputs) as conn:
                segment = cutover.wait_archived(conn, timeout=ARCHIVE_TIMEOUT_S)
        except (TimeoutError, psycopg.Error, subprocess.SubprocessError) as exc:
            raise StandbyError(f"{self.outputs.stack}'s new timeline is not protected: {one_line(exc)}") from None
        return {"base_backup_dir": str(folder), "archived_wal": segment}

    def generation(
        self, settings: Settings, generation: int | None = None, refresh: bool = False
    ) -> SelfManagedDatabase:
        return self  # one server, whatever generation the stack declares

    # -- point in time ---------------------------------------------------------------------------------------------
    def restorer(self, rds: bool = False) -> Database:
        return RdsDatabase(self.outputs) if rds else self

    def check_restore(self, request: PitrRequest) -> None:
        if not request.window and request.target_instance:
            rest = "" if request.cutover else "; self-managed takes --target-dir/--target-port"
            raise BadInput(f"--target-instance is for an RDS restore (add --rds){rest}")

    def restore_title(self, request: PitrRequest) -> str:
        return "self-managed, for cutover" if request.cutover else f"self-managed, WAL from the {request.wal_source}"

    def _with_archive(self, archive_dir: Path, base_backup_dir: Path) -> SelfManagedPostgres:
        return self.server.model_copy(update={"archive_dir": str(archive_dir), "base_backup_dir": str(base_backup_dir)})

    def window(self, report: Report, copy: ArchiveCopy | None = None) -> Shown:
        """The window of the server's archive, or of `copy` alone (its newest segments and base backup labels,
        copied into a scratch folder)."""
        if copy is None:
            return self._window(report, self.server, None)
        with tempfile.TemporaryDirectory(prefix="drtopo-wal-window-") as folder:
            archive_dir, base_dir = copy.fetch(Path(folder), "newest", report, Clock())
            return self._window(report, self._with_archive(archive_dir, base_dir), copy)

    def _window(self, report: Report, server: SelfManagedPostgres, copy: ArchiveCopy | None) -> Shown:
        window = window_self_managed(self.outputs, server, datetime.now(UTC))

        def where(backup: BaseBackup) -> str:
            return copy.location(backup) if copy else str(backup.path)

        def chain() -> None:
            if not window.backups:
                return
            oldest = min(window.backups, key=lambda b: b.start_time)
            gaps = copy.gaps(oldest.start_wal) if copy else check_wal_chain(Path(self.server.archive_dir), oldest)
            report.measured["wal_gaps"] = gaps
            archived = copy.name if copy else "the archive"
            report.check(
                "WAL chain",
                not gaps,
                f"no gap from {oldest.start_wal} (base backup {where(oldest)}) to the newest segment in {archived}"
                if not gaps
                else f"{len(gaps)} segments missing in {archived}, first {gaps[0]}: a restore cannot replay past it",
                value=len(gaps),
                limit=0,
            )

        def uses(target: datetime) -> str:
            chosen = choose_base_backup(list(window.backups), target)
            report.measured["base_backup"] = where(chosen)
            return f"base backup {where(chosen)} (consistent at {chosen.consistent_at.isoformat()}), then WAL to T"

        what = f"{copy.name}'s" if copy else "the self-managed"
        return show(window, what, report, where, uses, chain)

    def restore(
        self, request: PitrRequest, report: Report, clock: Clock, copy: ArchiveCopy | None = None
    ) -> dict[str, Any]:
        """Base backup + WAL to T in a new data directory, promoted. From `copy` alone: the source is flushed first
        (so the copy holds a commit after T), the copy is made beside the data directory, a gap after the chosen
        base backup is refused before any replay, only that base backup is fetched; the copy is removed after."""
        target = request.target
        if copy is None:
            where = (request.target_dir, request.target_port)
            return restore_self_managed(self.outputs, self.server, target, report, clock, *where, request.dry_run)
        if not request.dry_run:
            report.check("source archive", True, flush_archive(self.outputs, clock))
        folder = Path(self.server.data_dir).parent / f"wal-bucket-{target.strftime('%Y%m%dT%H%M%SZ')}"
        shutil.rmtree(folder, ignore_errors=True)
        try:
            archive_dir, base_dir = copy.fetch(folder, "newest" if request.dry_run else "all", report, clock)
            chosen = choose_base_backup(find_base_backups(base_dir, archive_dir), target)
            gaps = copy.gaps(chosen.start_wal)
            report.measured["wal_gaps"] = gaps
            if gaps:
                raise BadInput(
                    f"{copy.name} misses {len(gaps)} WAL segments after base backup {chosen.start_wal}, "
                    f"first {gaps[0]}: a restore to {target.isoformat()} cannot replay past it"
                )
            report.check("WAL chain", True, f"no gap in {copy.name} from {chosen.start_wal} on")
            return restore_self_managed(
                self.outputs,
                self._with_archive(archive_dir, base_dir),
                target,
                report,
                clock,
                request.target_dir,
                request.target_port,
                request.dry_run,
                fetch_base=copy.fetch_base,
                flush=False,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def cutover(
        self,
        request: PitrRequest,
        report: Report,
        clock: Clock,
        peer: Callable[[], Database | None] = lambda: None,
        steps: cutover.Steps | None = None,
    ) -> list[str]:
        """Corruption recovery end to end: restore to T into a new instance, re-apply what the damaged database
        acknowledged after T (never the damaging transactions' rows), fence the damaged database, re-apply what came
        in meanwhile, validate, then the rename swap: the restored instance takes the damaged one's data directory
        and endpoint, the damaged one is kept, renamed; last, `peer()`'s standby follows the restored instance. Each
        is a step of `steps` (cutover.CutoverStep; journalled, a rerun after a crash resumes after the last one
        done). With `dry_run` the restore runs into a scratch instance only to find the rows, which are returned as
        lines; the source and the service are left as they are."""
        pg, outputs, target = self.server, self.outputs, request.target
        steps = steps or cutover.Untracked(clock)
        damage_xids = list(request.damage_xids)
        if not damage_xids:
            raise BadInput("--cutover needs --damage-xid XID (the damaging transaction: it is never re-applied)")
        stamp = target.strftime("%Y%m%dT%H%M%SZ")
        target_dir = (request.target_dir or Path(pg.data_dir).parent / f"pitr-{stamp}").resolve()
        if target_dir.parent.stat().st_dev != Path(pg.data_dir).parent.stat().st_dev:
            raise BadInput(
                f"--target-dir {target_dir} is on another file system than {pg.data_dir}; the swap renames it"
            )
        secret = password(outputs)
        if request.dry_run:
            with clock.step(f"point-in-time restore to {target.isoformat()} ({self.restore_title(request)})"):
                restored = restore_self_managed(
                    outputs, pg, target, report, clock, target_dir, request.target_port, dry_run=False
                )
            report.measured.update(restored, restore_seconds=clock.steps[-1]["seconds"])
            try:
                with (
                    connect(outputs) as damaged,
                    psycopg.connect(restored["conninfo"], password=secret, autocommit=True) as new,
                ):
                    plans, _ = reapply.find(damaged, new)
                    left = reapply.unreplayed(damaged, new, damage_xids)
            finally:
                stop_instance(pg, target_dir)
                shutil.rmtree(target_dir, ignore_errors=True)
            report.measured["would_reapply"] = left
            report.check(
                "plan",
                True,
                f"re-apply {sum(len(k) for k in left.values())} rows, then cut over; "
                "the scratch restore was removed, nothing else changed",
            )
            return cutover.rows_to_reapply(plans, left)

        def restore() -> dict[str, Any]:
            started = time.monotonic()
            with clock.step(f"point-in-time restore to {target.isoformat()} ({self.restore_title(request)})"):
                done = restore_self_managed(
                    outputs, pg, target, report, clock, target_dir, request.target_port, dry_run=False, staging=True
                )
            return {**done, "restore_seconds": round(time.monotonic() - started, 3), "damage_xids": damage_xids}

        restored = steps.run(cutover.CutoverStep.RESTORE, restore)
        report.measured.update({k: v for k, v in restored.items() if k != "damage_xids"})
        target_dir = Path(restored["data_dir"])
        if not steps.done(cutover.CutoverStep.SWAP):
            # A resumed run finds the restored instance as the interrupted one left it: running, unless the host
            # restarted since.
            cutover.ensure_running(pg, target_dir)

        def settle(damaged: psycopg.Connection, new: psycopg.Connection) -> dict[str, str]:
            cutover.wait_archived(new)  # every re-applied row's WAL is in the staging folder before the swap
            return cutover.read_settings(damaged)

        outcome = cutover.reapply_until_fenced(
            outputs, report, clock, restored["conninfo"], damage_xids, self.fence, settle, steps
        )
        if outcome is None:
            return []

        def swap() -> dict[str, Any]:
            kept, shipped = cutover.swap_in(pg, target_dir, outcome.settled, stamp, clock)
            return {"kept": str(kept), "shipped": shipped}

        swapped = steps.run(cutover.CutoverStep.SWAP, swap)
        endpoint_conninfo = conninfo(outputs)

        def writable() -> dict[str, Any]:
            with clock.step("wait until the restored instance is writable at the source's endpoint"):
                waited = wait_promoted(endpoint_conninfo, secret, Path(pg.data_dir) / "pitr.log", 60)
            return {"waited_seconds": round(waited, 3), "writable_at": time.time()}

        ready = steps.run(cutover.CutoverStep.WRITABLE, writable)
        report.check(
            "cutover",
            True,
            f"restored instance serves {outputs.db_address}:{outputs.db_port}; damaged kept in {swapped['kept']}",
        )

        def follow() -> dict[str, Any]:
            standby = peer()
            found = Report()
            if standby is None:
                cutover.standby_not_here(found, outputs)
            else:
                standby.follow(self, found, clock)
            return {"checks": [c.to_dict() for c in found.checks]}

        for check in steps.run(cutover.CutoverStep.STANDBY, follow)["checks"]:
            report.record(check["name"], check["outcome"], check["detail"], check.get("value"), check.get("limit"))
        report.measured.update(
            outcome.measured(),
            writable_at=ready["writable_at"],
            cutover_at=ready["writable_at"],
            damaged_kept=swapped["kept"],
            scratch_wal=str(staging_dir(target_dir)),
            wal_shipped=swapped["shipped"],
            data_dir=pg.data_dir,
            conninfo=endpoint_conninfo,
        )
        return []

    def follow(self, source: Database, report: Report, clock: Clock) -> None:
        """After a cutover this standby still follows the damaged instance's timeline (it replayed the damage):
        rebuild it as a standby of the restored instance (pg_rewind back to the fork at T, else a fresh base
        backup), then wait until it has replayed the restored instance's current position, so the stack is
        protected again."""
        peer, outputs = self.outputs, source.outputs
        try:
            with connect(peer) as conn:
                standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        except psycopg.OperationalError as exc:
            report.skip("standby", f"{peer.stack}'s database does not answer ({one_line(exc)}); rebuild it later")
            return
        if not standby:
            report.skip("standby", f"{peer.stack}'s database is a primary, not this stack's standby: left as it is")
            return
        try:
            with clock.step(f"rebuild {peer.stack}'s standby from the restored instance"):
                result = rebuild_postgres(peer, outputs)
            with connect(outputs) as primary, connect(peer) as conn:
                lsn = primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
                with clock.step(f"wait until {peer.stack}'s standby has replayed {lsn}"):
                    waited = replication.wait_replayed(conn, lsn, 120)
        except (StandbyError, TimeoutError, psycopg.Error) as exc:
            # The cutover stands (the service writes to the restored instance); only the protection is missing.
            report.check("standby", False, f"{peer.stack} not rebuilt: {one_line(exc)}; rebuild it by hand")
            return
        report.check(
            "standby",
            True,
            f"{peer.stack} rebuilt as a standby of the restored instance by {result['postgres']}; replayed {lsn} "
            f"{waited:.1f} s later",
        )
