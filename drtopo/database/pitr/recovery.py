"""Self-managed point-in-time restore: a base backup plus the WAL archive replayed up to T in a new data directory,
then promoted.

PostgreSQL 12+ style: `recovery.signal` and settings in `postgresql.auto.conf` (`restore_command`,
`recovery_target_time`, `recovery_target_action = promote`). A base backup inherits its source's archiving and
replication settings, so the restored instance turns `archive_mode` off (it must never write into the source's
archive), has no `standby.signal` and an empty `primary_conninfo`. `pg_ctl -w` returns before promotion ends, so we
poll `pg_is_in_recovery()`.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg

from drtopo.database import connect as db
from drtopo.database import pg_tools
from drtopo.database.pitr.labels import BaseBackup, choose_base_backup, find_base_backups
from drtopo.database.pitr.wal_names import newest_archived_commit, segment_distance
from drtopo.database.pitr.window import Window, check_window, self_managed_window
from drtopo.errors import one_line
from drtopo.outputs import SelfManagedPostgres, StackOutputs
from drtopo.report import BadInput, Clock, Report

LOOPBACK = "127.0.0.1"


def source_is_primary(outputs: StackOutputs) -> bool:
    """Whether the source answers and is a primary (then `flush_archive` makes the archive reach now)."""
    try:
        with db.connect(outputs) as conn:
            return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except psycopg.OperationalError:
        return False


def window_self_managed(outputs: StackOutputs, pg: SelfManagedPostgres, now: datetime) -> Window:
    archive = Path(pg.archive_dir)
    backups = find_base_backups(Path(pg.base_backup_dir), archive)
    if source_is_primary(outputs):
        return self_managed_window(backups, now, "now: the source is a primary; a marker commit is archived first")
    newest = newest_archived_commit(archive, pg.bin_dir)
    return self_managed_window(backups, newest, "the newest commit in the WAL archive (source not a primary)")


def no_quotes(path: Path, what: str) -> None:
    if "'" in str(path) or '"' in str(path):
        raise BadInput(f"{what} {path} contains a quote; expected a path without quotes")


def recovery_settings(archive_dir: Path, target: datetime, port: int, staging: Path | None = None) -> str:
    """The lines appended to the restored instance's postgresql.auto.conf (they override postgresql.conf).

    The restored instance never archives into the source's archive. With `staging` (a restore that will be cut over)
    it archives its new timeline (history file, segments) into that folder instead, so that once it takes the
    source's place every segment since T reaches the archive and later restores can follow the new timeline.
    """
    no_quotes(archive_dir, "archive directory")
    if staging is not None:
        no_quotes(staging, "staging folder")
    archiving = (
        ["archive_mode = on", f'archive_command = \'test ! -f "{staging}/%f" && cp "%p" "{staging}/%f"\'']
        if staging is not None
        else ["archive_mode = off", "archive_command = ''"]
    )
    return "\n".join(
        [
            "# drtopo point-in-time restore",
            f'restore_command = \'cp "{archive_dir}/%f" "%p"\'',
            f"recovery_target_time = '{target.isoformat()}'",
            "recovery_target_inclusive = on",
            "recovery_target_action = 'promote'",
            "recovery_target_timeline = 'latest'",
            *archiving,
            "primary_conninfo = ''",
            "primary_slot_name = ''",
            f"port = {port}",
            f"listen_addresses = '{LOOPBACK}'",
            "unix_socket_directories = ''",
            "cluster_name = 'pitr'",
            "logging_collector = off",
            # One syncfs() of the file system instead of an fsync per file of the copied base backup.
            "recovery_init_sync_method = syncfs",
            "",
        ]
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


def check_traversable(path: Path, user: str) -> None:
    """BadInput naming the first existing ancestor of `path` that `user` cannot enter (PostgreSQL needs them all)."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    for parent in reversed([path, *path.parents]):
        if not parent.exists():
            break
        st = parent.stat()
        if st.st_uid == entry.pw_uid or st.st_mode & 0o001 or (st.st_gid == entry.pw_gid and st.st_mode & 0o010):
            continue
        raise BadInput(f"--target-dir {path}: {parent} is not traversable by user {user}; choose another directory")


def _give(paths: list[Path], user: str) -> None:
    """chown what we (root) created to the server's user; the base backup itself is unpacked as that user."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def lay_out(backup: BaseBackup, target_dir: Path, user: str) -> None:
    """Unpack (or copy) the base backup into an empty target directory, as `user` so it owns every file."""
    target_dir.mkdir(parents=True, exist_ok=True)
    if any(target_dir.iterdir()):
        raise BadInput(f"--target-dir {target_dir} is not empty; expected a new or empty directory")
    target_dir.chmod(0o700)
    _give([target_dir], user)
    if (backup.path / "backup_label").is_file():
        pg_tools.run(["cp", "-a", f"{backup.path}/.", str(target_dir)], user=user)
    else:
        tar_name = next(n for n in ("base.tar", "base.tar.gz") if (backup.path / n).is_file())
        pg_tools.run(["tar", "-xf", str(backup.path / tar_name), "-C", str(target_dir)], user=user)
        for wal_tar in ("pg_wal.tar", "pg_wal.tar.gz"):
            if (backup.path / wal_tar).is_file():
                pg_tools.run(["tar", "-xf", str(backup.path / wal_tar), "-C", str(target_dir / "pg_wal")], user=user)
    for leftover in ("standby.signal", "postmaster.pid", "postmaster.opts"):
        (target_dir / leftover).unlink(missing_ok=True)


def flush_archive(outputs: StackOutputs, clock: Clock, stall_seconds: float = 30, limit_seconds: float = 900) -> str:
    """Make the archive reach T: a marker commit after T, a WAL switch, and wait until that segment is archived.

    Recovery to a time stops at the first commit after T; without one in the archive it would run out of WAL.
    Only possible while the source is up and a primary; otherwise recovery uses what is already archived. After a
    bulk load the archiver may have a backlog (each file goes to the WAL bucket in turn): the wait goes on while
    it makes progress, showing how many files are left, and gives up after `stall_seconds` without progress or
    `limit_seconds` in all.
    """
    try:
        conn = db.connect(outputs)
    except psycopg.OperationalError as exc:
        return f"source unreachable ({one_line(exc)}); using the archive as it is"
    with conn, clock.step("flush the source's WAL into the archive"):
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            return "source is a standby; using the archive as it is"
        conn.execute("SELECT pg_current_xact_id()")
        segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        size = int(conn.execute("SELECT pg_size_bytes(current_setting('wal_segment_size'))").fetchone()[0])
        start = last_progress = last_said = time.monotonic()
        last_count = -1
        while True:
            archived, count, failed = conn.execute(
                "SELECT last_archived_wal, archived_count, failed_count FROM pg_stat_archiver"
            ).fetchone()
            if archived is not None and archived[:24] >= segment:
                return f"archived through {segment}"
            now = time.monotonic()
            if count != last_count:
                last_count, last_progress = count, now
            if now - last_progress > stall_seconds or now - start > limit_seconds:
                return (
                    f"segment {segment} not archived after {now - start:.0f} s (last archived {archived}, "
                    f"{failed} failed attempts); using the archive as it is"
                )
            if now - last_said >= 5:
                behind = segment_distance(archived, segment, size)
                clock.say(f"  archiver at {archived}: {behind} segments to {segment} ({now - start:.0f} s)")
                last_said = now
            time.sleep(0.1)


_STOPPED = re.compile(r"recovery stopping before (?:commit|abort) of transaction \d+, time (.+)$", re.M)
_LAST = re.compile(r"last completed transaction was at log time (.+)$", re.M)


def recovery_outcome(log: str) -> dict[str, str | None]:
    """What the restored server logged about where recovery stopped."""
    stopped, last = _STOPPED.search(log), _LAST.search(log)
    fatal = [line for line in log.splitlines() if "FATAL" in line or "PANIC" in line]
    return {
        "stopped_before": stopped.group(1).strip() if stopped else None,
        "last_transaction": last.group(1).strip() if last else None,
        "fatal": fatal[-1] if fatal else None,
    }


def recovery_failure(log: Path) -> str | None:
    """The server's FATAL line about recovery, with what to do about it; None while there is none."""
    fatal = recovery_outcome(log.read_text(errors="replace"))["fatal"] if log.exists() else None
    if fatal is None:
        return None
    hint = (
        "; the archive holds no commit after T: choose an earlier time or archive the source's last WAL"
        if "before configured recovery target" in fatal
        else ""
    )
    return f"recovery failed: {fatal}{hint}"


def wait_promoted(conninfo: str, password: str | None, log: Path, timeout: float) -> float:
    """Seconds until the instance accepts connections and has left recovery; fails with the log's FATAL line."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with psycopg.connect(conninfo, password=password, autocommit=True) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return time.monotonic() - start
        except psycopg.OperationalError:
            failure = recovery_failure(log)
            if failure:
                raise RuntimeError(failure) from None
        time.sleep(0.1)
    raise TimeoutError(f"restored instance still in recovery after {timeout:.0f} s; see {log}")


def restore_self_managed(
    outputs: StackOutputs,
    pg: SelfManagedPostgres,
    target: datetime,
    report: Report,
    clock: Clock,
    target_dir: Path | None,
    port: int | None,
    dry_run: bool,
    timeout: float = 600,
    staging: bool = False,
    fetch_base: Callable[[BaseBackup], None] | None = None,
    flush: bool = True,
) -> dict[str, Any]:
    """Base backup + WAL to T in a new data directory, promoted; with `staging` its new timeline is archived into
    `<data dir>.wal` (see `recovery_settings`) for a later `swap_in`. `pg` may be a local copy of a WAL bucket
    (drtopo.backup.wal): `fetch_base` then brings the chosen backup's files, and the caller has flushed the source
    already (`flush` False)."""
    archive = Path(pg.archive_dir)
    window = window_self_managed(outputs, pg, datetime.now(UTC))
    check_window(target, window.earliest, window.latest, "the self-managed")
    chosen = choose_base_backup(list(window.backups), target)
    stamp = target.strftime("%Y%m%dT%H%M%SZ")
    target_dir = (target_dir or Path(pg.data_dir).parent / f"pitr-{stamp}").resolve()
    port = port or free_port()
    plan = {
        "base_backup": str(chosen.path),
        "base_backup_consistent_at": chosen.consistent_at.isoformat(),
        "target_time": target.isoformat(),
        "data_dir": str(target_dir),
        "port": port,
    }
    if port_in_use(port):
        raise BadInput(f"--target-port {port} is in use; choose a free port or leave it out")
    check_traversable(target_dir, pg.os_user)
    if dry_run:
        report.check("plan", True, f"replay {chosen.path} + {archive} to {target.isoformat()} in {target_dir}")
        return plan
    if flush:
        report.check("source archive", True, flush_archive(outputs, clock))
    if fetch_base is not None:
        with clock.step(f"fetch base backup {chosen.path.name}"):
            fetch_base(chosen)
    with clock.step(f"lay out base backup {chosen.path.name} in {target_dir}"):
        lay_out(chosen, target_dir, pg.os_user)
    log = target_dir / "pitr.log"
    staged = staging_dir(target_dir) if staging else None
    if staged is not None:
        staged.mkdir(mode=0o700)
        _give([staged], pg.os_user)
    with open(target_dir / "postgresql.auto.conf", "a") as conf:
        conf.write("\n" + recovery_settings(archive, target, port, staged))
    (target_dir / "recovery.signal").touch()
    _give([target_dir / "postgresql.auto.conf", target_dir / "recovery.signal"], pg.os_user)
    conninfo = psycopg.conninfo.make_conninfo(
        host=LOOPBACK, port=str(port), user=outputs.db_user, dbname=outputs.db_name, connect_timeout="3"
    )
    with clock.step("replay WAL to T and promote") as step:
        try:
            pg_tools.pg_ctl(pg.bin_dir, pg.os_user, "start", "-D", str(target_dir), "-l", str(log), "-t", "60")
        except pg_tools.PgToolError as exc:
            raise RuntimeError(recovery_failure(log) or str(exc)) from None
        try:
            step["promoted_after_seconds"] = round(wait_promoted(conninfo, db.password(outputs), log, timeout), 3)
        except (RuntimeError, TimeoutError):
            stop_instance(pg, target_dir)
            raise
    outcome = recovery_outcome(log.read_text(errors="replace"))
    report.check(
        "recovery stopped at T",
        outcome["stopped_before"] is not None,
        f"stopped before the first commit after T, at {outcome['stopped_before']}"
        if outcome["stopped_before"]
        else "no commit after T found in the archive",
    )
    report.check("promoted", True, f"PostgreSQL on {LOOPBACK}:{port}, data in {target_dir}")
    return {**plan, **outcome, "conninfo": conninfo, "log": str(log)}


def staging_dir(data_dir: Path) -> Path:
    """Where a restored instance that will be cut over archives its WAL until it takes the source's place."""
    return data_dir.with_name(data_dir.name + ".wal")


def stop_instance(pg: SelfManagedPostgres, data_dir: Path) -> None:
    """Fast shutdown of a restored instance (tests and benchmarks; operators keep it)."""
    try:
        pg_tools.pg_ctl(pg.bin_dir, pg.os_user, "status", "-D", str(data_dir))
    except pg_tools.PgToolError:
        return  # not running (a failed recovery has already shut down)
    pg_tools.pg_ctl(pg.bin_dir, pg.os_user, "stop", "-D", str(data_dir), "-m", "fast", "-t", "60")


class ArchiveCopy(Protocol):
    """Another archive of a self-managed server's base backups and WAL (drtopo.backup.wal: the stack's WAL bucket),
    copied to this host for a restore that uses it alone."""

    @property
    def name(self) -> str:
        """Where it is, as shown: e.g. `s3://<bucket>`."""
        ...

    def fetch(self, folder: Path, segments: str, report: Report, clock: Clock) -> tuple[Path, Path]:
        """Copy it into `folder` ("all" segments, or the "newest" only; base backups as their labels); returns the
        archive folder and the base backup folder of the copy."""
        ...

    def gaps(self, start_wal: str) -> list[str]:
        """The segments it misses from `start_wal` to its newest one."""
        ...

    def fetch_base(self, backup: BaseBackup) -> None:
        """Bring the files of `backup` (known by its label) into its folder of the copy."""
        ...

    def location(self, backup: BaseBackup) -> str:
        """Where `backup` is kept, as shown."""
        ...
