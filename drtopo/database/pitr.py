"""Point-in-time recovery to a time T: RDS restore-to-time into a new instance, or, for a self-managed PostgreSQL,
a base backup plus the WAL archive replayed up to T in a new data directory, then promoted.

Self-managed recovery is PostgreSQL 12+ style: `recovery.signal` and settings in `postgresql.auto.conf`
(`restore_command`, `recovery_target_time`, `recovery_target_action = promote`). A base backup inherits its source's
archiving and replication settings, so the restored instance turns `archive_mode` off (it must never write into the
source's archive), has no `standby.signal` and an empty `primary_conninfo`. `pg_ctl -w` returns before promotion
ends, so we poll `pg_is_in_recovery()`.
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from drtopo.aws import stack_client
from drtopo.database import connect as db
from drtopo.database import pg_tools
from drtopo.errors import one_line
from drtopo.outputs import SelfManagedPostgres, StackOutputs
from drtopo.report import BadInput, Clock, Report, Unsafe

LOOPBACK = "127.0.0.1"


def parse_target_time(text: str, now: datetime) -> datetime:
    """T from ISO 8601 with a zone (`Z` or an offset), no later than `now`; anything else is BadInput."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"--time {text!r} is not an ISO 8601 time; expected e.g. 2026-11-27T14:05:00Z") from None
    if value.tzinfo is None:
        raise BadInput(f"--time {text!r} has no zone; expected an offset or Z, e.g. 2026-11-27T14:05:00+00:00")
    if value > now:
        raise BadInput(f"--time {text!r} is in the future (now is {now.isoformat(timespec='seconds')})")
    return value.astimezone(UTC)


def check_window(target: datetime, earliest: datetime, latest: datetime, what: str) -> None:
    """Refuse (BadInput) a target outside [earliest, latest], naming the window."""
    if not earliest <= target <= latest:
        raise BadInput(
            f"--time {target.isoformat()} is outside {what} restorable window "
            f"{earliest.isoformat(timespec='seconds')} .. {latest.isoformat(timespec='seconds')}"
        )


# ---- self-managed PostgreSQL -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseBackup:
    path: Path
    start_wal: str  # WAL file name holding the backup's start
    start_time: datetime
    stop_time: datetime | None  # from the archived backup history file, when there is one

    @property
    def consistent_at(self) -> datetime:
        """The earliest time recovery from this backup can stop at (the backup's end; its start if unknown)."""
        return self.stop_time or self.start_time


_LABEL_TIME = re.compile(r"^(START|STOP) TIME: (.+)$", re.M)
_LABEL_WAL = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.M)


def parse_label_time(text: str) -> datetime:
    """`2026-11-27 15:52:27 UTC` (a backup label's time) as an aware datetime."""
    stamp, _, zone = text.strip().rpartition(" ")
    value = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    if zone in ("UTC", "GMT"):
        return value.replace(tzinfo=UTC)
    raise ValueError(f"backup label time {text!r} is not in UTC; expected the server's log_timezone to be UTC")


def parse_backup_label(text: str) -> tuple[str, dict[str, datetime]]:
    wal = _LABEL_WAL.search(text)
    if wal is None:
        raise ValueError("backup label has no START WAL LOCATION line")
    return wal.group(1), {m.group(1): parse_label_time(m.group(2)) for m in _LABEL_TIME.finditer(text)}


# A base backup known from its WAL bucket (drtopo.backup.wal): only its label is local until its tars are fetched,
# kept under this name (a plain `backup_label` would make the folder look like an unpacked backup).
REMOTE_LABEL = "backup_label.bucket"


def read_label(folder: Path) -> str | None:
    """The backup label of the base backup in `folder`: plain, inside base.tar, or fetched from the WAL bucket."""
    if (folder / "backup_label").is_file():
        return (folder / "backup_label").read_text()
    for name in ("base.tar", "base.tar.gz"):
        if (folder / name).is_file():
            with tarfile.open(folder / name, "r:*") as tar:
                # pg_basebackup writes backup_label first: stop there rather than index a large archive.
                for member in tar:
                    if member.name == "backup_label":
                        label = tar.extractfile(member)
                        return label.read().decode() if label else None
    if (folder / REMOTE_LABEL).is_file():
        return (folder / REMOTE_LABEL).read_text()
    return None


def find_base_backups(base_backup_dir: Path, archive_dir: Path) -> list[BaseBackup]:
    """Base backups in the folder itself or its subfolders (tar or plain), oldest first."""
    found = []
    for folder in [base_backup_dir, *sorted(p for p in base_backup_dir.glob("*") if p.is_dir())]:
        label = read_label(folder)
        if label is None:
            continue
        wal, times = parse_backup_label(label)
        stop = None
        for history in archive_dir.glob(f"{wal}.*.backup"):
            _, history_times = parse_backup_label(history.read_text())
            stop = history_times.get("STOP")
        found.append(BaseBackup(folder, wal, times["START"], stop))
    return sorted(found, key=lambda b: b.start_time)


def choose_base_backup(backups: list[BaseBackup], target: datetime) -> BaseBackup:
    """The newest base backup consistent before T; T before the oldest one is BadInput."""
    if not backups:
        raise BadInput("no base backup found; expected a base backup (pg_basebackup) in selfManaged.baseBackupDir")
    usable = [b for b in backups if b.consistent_at <= target]
    if not usable:
        oldest = min(b.consistent_at for b in backups)
        raise BadInput(
            f"--time {target.isoformat()} is before the oldest base backup; "
            f"earliest restorable time is {oldest.isoformat(timespec='seconds')}"
        )
    return max(usable, key=lambda b: b.consistent_at)


# ---- the restorable window --------------------------------------------------------------------------------------

WAL_NAME = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_WALDUMP_END = re.compile(r"tx:\s*(\d+),.*desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")


@dataclass(frozen=True)
class Window:
    """What a point-in-time restore can reach: [earliest, latest] and where `latest` comes from."""

    earliest: datetime
    latest: datetime
    latest_basis: str
    backups: tuple[BaseBackup, ...] = ()

    def describe(self) -> str:
        return f"{self.earliest.isoformat(timespec='seconds')} .. {self.latest.isoformat(timespec='seconds')}"


def self_managed_window(backups: list[BaseBackup], latest: datetime | None, basis: str) -> Window:
    """[the oldest base backup's consistent point, the newest point WAL reaches]; BadInput when nothing is restorable.

    Recovery to T stops at the first commit after T, so `latest` is the newest commit the archive holds (or now, when
    the source is a primary that `flush_archive` can make commit once more and archive).
    """
    if not backups:
        raise BadInput("no base backup found; expected a base backup (pg_basebackup) in selfManaged.baseBackupDir")
    earliest = min(b.consistent_at for b in backups)
    if latest is None or latest < earliest:
        raise BadInput(
            f"the WAL archive holds no commit after the oldest base backup ({earliest.isoformat(timespec='seconds')}); "
            "nothing can be restored to a point in time"
        )
    return Window(earliest, latest, basis, tuple(backups))


def newest_commit_in(waldump_output: str) -> datetime | None:
    """The newest COMMIT/ABORT time in `pg_waldump --rmgr=Transaction` output (recovery stops only at those)."""
    times = [datetime.fromisoformat(m.group(2)).replace(tzinfo=UTC) for m in _WALDUMP_END.finditer(waldump_output)]
    return max(times) if times else None


def archived_segments(archive_dir: Path) -> list[str]:
    """WAL segment files in the archive (no history or backup files), in WAL order."""
    return sorted(p.name for p in archive_dir.iterdir() if WAL_NAME.match(p.name)) if archive_dir.is_dir() else []


def newest_archived_commit(archive_dir: Path, bin_dir: str | None, segments_to_read: int = 8) -> datetime | None:
    """The newest commit time in the archive, read with pg_waldump from the newest segments backwards (bounded)."""
    segments = archived_segments(archive_dir)
    for name in reversed(segments[-segments_to_read:]):
        proc = pg_tools.run([pg_tools.binary("pg_waldump", bin_dir), "--rmgr=Transaction", str(archive_dir / name)])
        found = newest_commit_in(proc.stdout)
        if found is not None:
            return found
    return None


DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_HISTORY_LINE = re.compile(r"^\s*(\d+)\s+([0-9A-F]+)/([0-9A-F]+)", re.M | re.I)


def segment_of(name: str, segment_size: int) -> tuple[int, int]:
    """(timeline, segment number) of a WAL file name, for WAL segments of `segment_size` bytes (pure)."""
    m = WAL_NAME.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not a WAL segment name; expected 24 hex digits")
    per_log = 0x100000000 // segment_size
    return int(m.group(1), 16), int(m.group(2), 16) * per_log + int(m.group(3), 16)


def segment_name(timeline: int, number: int, segment_size: int) -> str:
    per_log = 0x100000000 // segment_size
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def parse_history(text: str) -> list[tuple[int, int]]:
    """A timeline history file as (parent timeline, LSN where it ended), oldest first (pure)."""
    return [(int(m.group(1)), (int(m.group(2), 16) << 32) + int(m.group(3), 16)) for m in _HISTORY_LINE.finditer(text)]


def expected_timeline(number: int, newest: int, history: list[tuple[int, int]], segment_size: int) -> int:
    """The timeline whose WAL holds segment `number` on the way to timeline `newest` (pure): a parent until the
    segment holding its switch point, from which the child has the segment (the parent's copy is `.partial`)."""
    for parent, end in history:
        if number < end // segment_size:
            return parent
    return newest


def chain_gaps(names: list[str], start_wal: str, segment_size: int, history: list[tuple[int, int]]) -> list[str]:
    """The segments missing between the base backup's first segment and the newest archived one, following the
    newest timeline's history (pure). An empty list: recovery can replay every segment up to the newest."""
    present = {segment_of(n, segment_size) for n in names}
    if not present:
        return [start_wal]
    newest_tli = max(t for t, _ in present)
    _, first = segment_of(start_wal, segment_size)
    last = max(n for t, n in present if t == newest_tli)
    missing = []
    for number in range(first, last + 1):
        tli = expected_timeline(number, newest_tli, history, segment_size)
        if (tli, number) not in present:
            missing.append(segment_name(tli, number, segment_size))
    return missing


def check_wal_chain(archive_dir: Path, backup: BaseBackup) -> list[str]:
    """Missing segments in the archive from `backup` to the newest segment (segment size from the files)."""
    names = archived_segments(archive_dir)
    size = (archive_dir / names[0]).stat().st_size if names else DEFAULT_SEGMENT_SIZE
    timelines = sorted({segment_of(n, size)[0] for n in names})
    newest = timelines[-1] if timelines else 1
    history_file = archive_dir / f"{newest:08X}.history"
    history = parse_history(history_file.read_text()) if history_file.is_file() else []
    return chain_gaps(names, backup.start_wal, size, history)


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


def _no_quotes(path: Path, what: str) -> None:
    if "'" in str(path) or '"' in str(path):
        raise BadInput(f"{what} {path} contains a quote; expected a path without quotes")


def recovery_settings(archive_dir: Path, target: datetime, port: int, staging: Path | None = None) -> str:
    """The lines appended to the restored instance's postgresql.auto.conf (they override postgresql.conf).

    The restored instance never archives into the source's archive. With `staging` (a restore that will be cut over)
    it archives its new timeline (history file, segments) into that folder instead, so that once it takes the
    source's place every segment since T reaches the archive and later restores can follow the new timeline.
    """
    _no_quotes(archive_dir, "archive directory")
    if staging is not None:
        _no_quotes(staging, "staging folder")
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


def segment_distance(archived: str | None, segment: str, segment_size: int) -> str:
    """How many segments lie between the last archived one and `segment` (pure; '?' when unknown)."""
    if archived is None or not WAL_NAME.match(archived[:24]) or not WAL_NAME.match(segment):
        return "?"
    _, a = segment_of(archived[:24], segment_size)
    _, b = segment_of(segment, segment_size)
    return str(max(b - a, 0))


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


# What the restored instance takes over from the source it replaces: where clients reach it, its name, archiving.
TAKEN_OVER = ("port", "listen_addresses", "unix_socket_directories", "cluster_name", "archive_mode", "archive_command")


def takeover_settings(source: dict[str, str]) -> str:
    """postgresql.auto.conf lines that give a restored instance the source's identity (pure; later lines win)."""
    missing = [name for name in TAKEN_OVER if name not in source]
    if missing:
        raise ValueError(f"source settings lack {missing}; expected all of {list(TAKEN_OVER)}")
    quoted = {name: source[name].replace("'", "''") for name in TAKEN_OVER}
    lines = [f"{name} = '{quoted[name]}'" for name in TAKEN_OVER]
    return "\n".join(["# drtopo cutover: this instance replaced the damaged one", *lines, ""])


def read_settings(conn: psycopg.Connection, names: tuple[str, ...] = TAKEN_OVER) -> dict[str, str]:
    rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)).fetchall()
    return {name: value for name, value in rows}


def wait_archived(conn: psycopg.Connection, timeout: float = 30) -> str:
    """Switch to a new segment and wait until the archiver has shipped the one it closed; returns its name."""
    segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        archived = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
        if archived is not None and archived[:24] >= segment:
            return str(segment)
        time.sleep(0.05)
    raise TimeoutError(f"segment {segment} was not archived within {timeout:.0f} s")


def archive_command_line(command: str, path: Path, name: str) -> str:
    """`archive_command` with PostgreSQL's substitutions (pure): %p the file's path, %f its name, %% a percent."""
    out, i = [], 0
    while i < len(command):
        pair = command[i : i + 2]
        if pair in ("%p", "%f", "%%"):
            out.append({"%p": str(path), "%f": name, "%%": "%"}[pair])
            i += 2
        else:
            out.append(command[i])
            i += 1
    return "".join(out)


def ship_staged(staged: Path, archive_command: str, user: str, parallel: int = 4) -> list[str]:
    """Archive the staged WAL files through the source's own `archive_command`, as `user`, so they reach wherever
    the source archives (its folder, its WAL bucket): history files first, then the segments, `parallel` at a
    time (as WAL-G's and pgBackRest's parallel pushes); an idempotent command makes a rerun harmless. Returns the
    names in archive order."""
    _no_quotes(staged, "staging folder")
    if not archive_command.strip():
        raise BadInput("the source has no archive_command; expected archiving on for a restore that is cut over")
    files = sorted(staged.iterdir(), key=lambda p: (not p.name.endswith(".history"), p.name))

    def ship(path: Path) -> None:
        pg_tools.run(["sh", "-c", archive_command_line(archive_command, path, path.name)], user=user)

    for path in [f for f in files if f.name.endswith(".history")]:
        ship(path)
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="ship-staged") as pool:
        for future in [pool.submit(ship, f) for f in files if not f.name.endswith(".history")]:
            future.result()
    return [f.name for f in files]


def swap_in(
    pg: SelfManagedPostgres, restored_dir: Path, source: dict[str, str], stamp: str, clock: Clock
) -> tuple[Path, list[str]]:
    """The self-managed rename swap: the restored instance takes the source's data directory and settings (so its
    endpoint), the damaged one is stopped and kept renamed. Returns the kept directory and the WAL files shipped."""
    data_dir = Path(pg.data_dir)
    kept = data_dir.with_name(f"{data_dir.name}-damaged-{stamp}")
    if kept.exists():
        raise BadInput(f"{kept} exists; expected a new name for the damaged data directory")
    with clock.step("stop the restored and the damaged instance"):
        pg_tools.pg_ctl(pg.bin_dir, pg.os_user, "stop", "-D", str(restored_dir), "-m", "fast", "-t", "60")
        stop_instance(pg, data_dir)
    with clock.step(f"keep the damaged data directory as {kept.name}; the restored one takes {data_dir.name}"):
        data_dir.rename(kept)
        restored_dir.rename(data_dir)
        with open(data_dir / "postgresql.auto.conf", "a") as conf:
            conf.write("\n" + takeover_settings(source))
        shipped = ship_staged(staging_dir(restored_dir), source["archive_command"], pg.os_user)
    with clock.step("start the restored instance in the source's place"):
        pg_tools.pg_ctl(
            pg.bin_dir, pg.os_user, "start", "-D", str(data_dir), "-l", str(data_dir / "pitr.log"), "-t", "60"
        )
    return kept, shipped


def stop_instance(pg: SelfManagedPostgres, data_dir: Path) -> None:
    """Fast shutdown of a restored instance (tests and benchmarks; operators keep it)."""
    try:
        pg_tools.pg_ctl(pg.bin_dir, pg.os_user, "status", "-D", str(data_dir))
    except pg_tools.PgToolError:
        return  # not running (a failed recovery has already shut down)
    pg_tools.pg_ctl(pg.bin_dir, pg.os_user, "stop", "-D", str(data_dir), "-m", "fast", "-t", "60")


# ---- RDS ---------------------------------------------------------------------------------------------------------


def rds_window(instance: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """[earliest, latest] restorable: from max(created, latest - retention) to LatestRestorableTime."""
    retention = int(instance.get("BackupRetentionPeriod") or 0)
    if retention == 0:
        raise Unsafe(f"instance {instance['DBInstanceIdentifier']} has automated backups off; no point-in-time restore")
    latest = instance.get("LatestRestorableTime") or now
    earliest = max(instance.get("InstanceCreateTime") or latest, latest - timedelta(days=retention))
    return earliest.astimezone(UTC), latest.astimezone(UTC)


def window_rds(instance: dict[str, Any], now: datetime) -> Window:
    earliest, latest = rds_window(instance, now)
    basis = (
        f"LatestRestorableTime of {instance['DBInstanceIdentifier']}, "
        f"retention {instance.get('BackupRetentionPeriod')} days"
    )
    return Window(earliest, latest, basis)


def describe_source(rds: Any, outputs: StackOutputs) -> dict[str, Any]:
    return rds.describe_db_instances(DBInstanceIdentifier=outputs.db_instance_id)["DBInstances"][0]


def restore_rds(
    outputs: StackOutputs,
    target: datetime,
    report: Report,
    clock: Clock,
    new_instance: str | None,
    dry_run: bool,
    wait_seconds: float = 3600,
) -> dict[str, Any]:

    rds = stack_client("rds", outputs)
    source = describe_source(rds, outputs)
    window = window_rds(source, datetime.now(UTC))
    check_window(target, window.earliest, window.latest, f"instance {outputs.db_instance_id}'s")
    name = new_instance or f"{outputs.db_instance_id}-pitr-{target:%Y%m%d%H%M%S}"
    plan = {"source": outputs.db_instance_id, "target_instance": name, "restore_time": target.isoformat()}
    if dry_run:
        report.check("plan", True, f"restore {outputs.db_instance_id} to {target.isoformat()} as {name}")
        return plan
    request: dict[str, Any] = {
        "SourceDBInstanceIdentifier": outputs.db_instance_id,
        "TargetDBInstanceIdentifier": name,
        "RestoreTime": target,
        "DBInstanceClass": source["DBInstanceClass"],
        "MultiAZ": bool(source.get("MultiAZ")),
        "PubliclyAccessible": False,
        "DeletionProtection": True,
        "CopyTagsToSnapshot": True,
        "Tags": [
            {"Key": "drtopo:restored-from", "Value": outputs.db_instance_id},
            {"Key": "drtopo:restore-time", "Value": target.isoformat()},
        ],
    }
    if source.get("DBSubnetGroup"):
        request["DBSubnetGroupName"] = source["DBSubnetGroup"]["DBSubnetGroupName"]
    groups = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", [])]
    if groups:
        request["VpcSecurityGroupIds"] = groups
    params = [g["DBParameterGroupName"] for g in source.get("DBParameterGroups", [])]
    if params:
        request["DBParameterGroupName"] = params[0]
    with clock.step(f"restore_db_instance_to_point_in_time -> {name}"):
        rds.restore_db_instance_to_point_in_time(**request)
    with clock.step(f"wait until {name} is available"):
        rds.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier=name, WaiterConfig={"Delay": 15, "MaxAttempts": int(wait_seconds / 15)}
        )
    restored = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
    endpoint = restored.get("Endpoint") or {}
    report.check(
        "restored instance available",
        restored["DBInstanceStatus"] == "available",
        f"{name} at {endpoint.get('Address')}:{endpoint.get('Port')}",
        value=restored["DBInstanceStatus"],
    )
    return {**plan, "arn": restored["DBInstanceArn"], "address": endpoint.get("Address"), "port": endpoint.get("Port")}


# ---- RDS rename swap ---------------------------------------------------------------------------------------------
# AWS, "Renaming a DB instance" (RDS User Guide, USER_RenameInstance): an existing name cannot be reused, so the
# damaged instance is renamed first; the restored one then takes its name, so the endpoint the service uses (it
# includes the identifier) now leads to it. The old DNS name is deleted at once (cached for minutes), the new one is
# effective in about 10 minutes, and the instance reboots after a rename. Tags and snapshots stay with an instance.
RDS_IDENTIFIER = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
RDS_IDENTIFIER_MAX = 63


def kept_identifier(source: str, target: datetime) -> str:
    """The name the damaged instance is kept under: `<source>-damaged-<T>`; BadInput if RDS would refuse it."""
    name = f"{source}-damaged-{target.astimezone(UTC):%Y%m%d%H%M%S}".lower()
    if len(name) > RDS_IDENTIFIER_MAX or not RDS_IDENTIFIER.match(name):
        raise BadInput(
            f"instance {source!r} cannot be kept as {name!r}; expected at most {RDS_IDENTIFIER_MAX} letters, "
            "digits and single hyphens, starting with a letter"
        )
    return name


def _rename(rds: Any, current: str, new: str, wait_seconds: float) -> None:
    rds.modify_db_instance(DBInstanceIdentifier=current, NewDBInstanceIdentifier=new, ApplyImmediately=True)
    rds.get_waiter("db_instance_available").wait(
        DBInstanceIdentifier=new, WaiterConfig={"Delay": 15, "MaxAttempts": max(1, int(wait_seconds / 15))}
    )


def rds_rename_swap(
    rds: Any, source: str, restored: str, target: datetime, clock: Clock, wait_seconds: float = 1800
) -> dict[str, Any]:
    """The damaged instance is renamed `<source>-damaged-<T>` (kept, deletion protection on, tagged), then the
    restored one takes `source`'s name and with it the endpoint."""
    kept = kept_identifier(source, target)
    with clock.step(f"rename the damaged instance {source} -> {kept} (kept, never deleted)"):
        _rename(rds, source, kept, wait_seconds)
        arn = rds.describe_db_instances(DBInstanceIdentifier=kept)["DBInstances"][0]["DBInstanceArn"]
        rds.modify_db_instance(DBInstanceIdentifier=kept, DeletionProtection=True, ApplyImmediately=True)
        rds.add_tags_to_resource(
            ResourceName=arn,
            Tags=[
                {"Key": "drtopo:replaced-by", "Value": restored},
                {"Key": "drtopo:damaged-at", "Value": target.isoformat()},
            ],
        )
    with clock.step(f"rename the restored instance {restored} -> {source} (the service's endpoint)"):
        _rename(rds, restored, source, wait_seconds)
    serving = rds.describe_db_instances(DBInstanceIdentifier=source)["DBInstances"][0]
    return {
        "kept": kept,
        "serving": source,
        "serving_arn": serving["DBInstanceArn"],
        "endpoint": serving.get("Endpoint"),
    }
