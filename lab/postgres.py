"""The lab's PostgreSQL 15 pair: a primary archiving WAL with a tar base backup, and its streaming standby.

Server binaries refuse to run as root, so every server-side command runs as the `postgres` user (lab/process.py
demotes). Clusters have data checksums (`initdb -k`) so `pg_rewind` can fail back. The superuser `postgres` has a
random password (scram on TCP only; no unix socket), passed to children through PGPASSWORD, never argv.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from lab import process

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
SUPERUSER = "postgres"
SCHEMA = Path(__file__).resolve().parent / "schema.sql"
TEMPLATE = "template"


@dataclass(frozen=True)
class PgLayout:
    """Where the pair keeps its files under the lab root."""

    base: Path  # root/pg

    def data_dir(self, stack: str) -> Path:
        return self.base / stack

    @property
    def template_dir(self) -> Path:
        return self.base / TEMPLATE

    @property
    def archive_dir(self) -> Path:
        return self.base / "archive"

    @property
    def base_backup_dir(self) -> Path:
        return self.base / "basebackup"

    @property
    def snapshot_dir(self) -> Path:
        """The pair as first built (both data directories, archive, base backup), copied back by a reset."""
        return self.base / "snapshot"


def process_name(stack: str) -> str:
    return f"postgres-{stack}"


def server_conf(archive_dir: Path, archive_timeout_seconds: int) -> str:
    """postgresql.conf settings shared by every instance of the pair (base backups inherit them)."""
    if "'" in str(archive_dir) or '"' in str(archive_dir):
        raise ValueError(f"archive directory {archive_dir} contains a quote; expected a path without quotes")
    return "\n".join(
        [
            "# drtopo lab",
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 60",
            "shared_buffers = 64MB",
            "wal_level = replica",
            "wal_log_hints = on",
            "max_wal_senders = 10",
            "wal_keep_size = '64MB'",
            "min_wal_size = '8MB'",
            "max_wal_size = '256MB'",
            # The lab simulates process and host crashes (SIGKILL), after which the OS page cache survives, so
            # skipping fsync loses nothing there and keeps a busy 2-core machine fast. Never do this in production.
            "fsync = off",
            "hot_standby = on",
            "hot_standby_feedback = on",
            "archive_mode = on",
            f"archive_command = '{local_archive_command(archive_dir)}'",
            f"archive_timeout = {archive_timeout_seconds}",
            # A standby that falls behind the primary's kept WAL catches up from the archive.
            f"restore_command = 'cp \"{archive_dir}/%f\" %p'",
            "log_line_prefix = '%m [%p] %q%u@%d '",
            "",
        ]
    )


def local_archive_command(archive_dir: Path) -> str:
    """Copy into the lab's archive folder; the same file again is success, a different one is refused (the
    PostgreSQL manual: an archive command must not overwrite an archived file, and must succeed when PostgreSQL
    archives a file again after a crash)."""
    target = f'"{archive_dir}/%f"'
    return f'if test -f {target}; then cmp -s "%p" {target}; else cp "%p" {target}; fi'


def archive_command(archive_dir: Path, wal_push: str) -> str:
    """The lab's folder first, then `wal_push` (the stack's `scripts.wal push` command line, with %p and %f left
    for PostgreSQL): a file counts as archived once it is in both."""
    if "'" in wal_push:
        raise ValueError(f"WAL push command {wal_push!r} contains a single quote; expected none")
    return f"{{ {local_archive_command(archive_dir)}; }} && {wal_push}"


def instance_conf(stack: str, port: int, archive: str | None = None) -> str:
    """What differs per instance: its port, its name (the standby's application_name on the primary) and its
    archive command (into its own stack's WAL bucket)."""
    lines = [f"port = {port}", f"cluster_name = '{stack}'"]
    if archive is not None:
        lines.append(f"archive_command = '{archive}'")
    return "\n".join(lines) + "\n"


def run_as_postgres(argv: list[str], password: str | None = None, timeout: float = 120) -> None:
    env = {**os.environ, "PGPASSWORD": password} if password else dict(os.environ)
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        **process.demote_to(OS_USER),  # type: ignore[arg-type]
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")


def chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def check_traversable(path: Path) -> None:
    """Fail with the first ancestor the `postgres` user cannot enter (PostgreSQL needs every parent traversable)."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(OS_USER)
    for parent in reversed(path.resolve().parents):
        st = parent.stat()
        if st.st_uid == entry.pw_uid or st.st_mode & 0o001 or (st.st_gid == entry.pw_gid and st.st_mode & 0o010):
            continue
        raise RuntimeError(
            f"directory {parent} is not traversable by user {OS_USER}; run `chmod o+x {parent}` "
            "or choose another lab root (DRTOPO_LAB_DIR)"
        )


def prepare(layout: PgLayout, password: str, archive_timeout_seconds: int, dbname: str, root: Path) -> None:
    """Fresh folders and a configured cluster holding the database and schema, from which every primary is copied."""
    check_traversable(layout.base.parent)
    if layout.base.exists():
        shutil.rmtree(layout.base)
    layout.base.mkdir(parents=True)
    chown_to_postgres(layout.base)
    layout.archive_dir.mkdir()
    chown_to_postgres(layout.archive_dir)
    pwfile = layout.base / ".pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    chown_to_postgres(pwfile)
    try:
        run_as_postgres(
            [
                str(BIN_DIR / "initdb"),
                "-k",
                "-D",
                str(layout.template_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                # 1 MB WAL segments: archiving, base backups and resets copy little; WAL semantics are unchanged.
                "--wal-segsize=1",
                "--no-sync",
            ]
        )
    finally:
        pwfile.unlink()
    with open(layout.template_dir / "postgresql.conf", "a") as conf:
        conf.write(server_conf(layout.archive_dir, archive_timeout_seconds))
    # Created once here rather than on every reset: CREATE DATABASE copies and WAL-logs a whole database.
    port = process.free_port()
    start(root, layout, TEMPLATE, port, password, extra=("-p", str(port), "-c", "archive_mode=off"))
    try:
        create_database(port, password, dbname)
    finally:
        stop(root, layout, TEMPLATE)


def reset_data(layout: PgLayout) -> None:
    """Forget both instances, the archive and the base backup; keep the template."""
    for path in (layout.data_dir("prod"), layout.data_dir("dr"), layout.base_backup_dir, layout.archive_dir):
        if path.exists():
            shutil.rmtree(path)
    layout.archive_dir.mkdir()
    chown_to_postgres(layout.archive_dir)


def snapshot_parts(layout: PgLayout, stacks: Sequence[str]) -> list[Path]:
    """What a reset makes anew: both data directories, the archive folder and the base backup (pure)."""
    return [*(layout.data_dir(s) for s in stacks), layout.archive_dir, layout.base_backup_dir]


def save_snapshot(layout: PgLayout, stacks: Sequence[str]) -> None:
    """Copy the pair's files (servers stopped cleanly) to layout.snapshot_dir, replacing any earlier copy."""
    target = layout.snapshot_dir
    partial = target.with_name(target.name + ".partial")
    for path in (partial, target):
        if path.exists():
            shutil.rmtree(path)
    partial.mkdir()
    _copy_all(snapshot_parts(layout, stacks), partial)
    partial.rename(target)  # complete or absent: a copy interrupted half-way is never restored


def restore_snapshot(layout: PgLayout, stacks: Sequence[str]) -> int | None:
    """Put back the pair's files as save_snapshot left them (servers stopped): only the files that differ from the
    snapshot are copied, the ones it does not have removed. Returns the number of files copied; None when there is
    no snapshot (nothing touched)."""
    if not layout.snapshot_dir.is_dir():
        return None
    return sum(sync_tree(layout.snapshot_dir / p.name, p) for p in snapshot_parts(layout, stacks))


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode, a.st_size, a.st_mtime_ns, a.st_uid, a.st_gid) == (
        b.st_mode,
        b.st_size,
        b.st_mtime_ns,
        b.st_uid,
        b.st_gid,
    )


def sync_tree(source: Path, target: Path) -> int:
    """Make `target` hold what `source` holds (files, folders, links; modes, owners and times kept), as `rsync -a
    --delete` would: a file whose type, size, time, mode and owner match is left alone (PostgreSQL writes its files
    in place, which moves their time), the others are copied, and what `source` lacks is removed. Returns the
    number of files copied."""
    copied = 0
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        target.unlink()
    if not target.is_dir():
        target.mkdir()
    st = source.stat()
    if os.geteuid() == 0:
        os.chown(target, st.st_uid, st.st_gid)
    target.chmod(st.st_mode & 0o7777)
    wanted = {entry.name: entry for entry in os.scandir(source)}
    for entry in os.scandir(target):
        if entry.name not in wanted:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    for name, entry in wanted.items():
        there = target / name
        if entry.is_dir(follow_symlinks=False):
            copied += sync_tree(Path(entry.path), there)
            continue
        src_stat = entry.stat(follow_symlinks=False)
        try:
            dst_stat: os.stat_result | None = there.lstat()
        except FileNotFoundError:
            dst_stat = None
        if dst_stat is not None and _same_file(src_stat, dst_stat):
            continue
        if dst_stat is not None:
            if there.is_dir() and not there.is_symlink():
                shutil.rmtree(there)
            else:
                there.unlink()
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), there)
        else:
            shutil.copy2(entry.path, there)
        if os.geteuid() == 0:
            os.chown(there, src_stat.st_uid, src_stat.st_gid, follow_symlinks=False)
        copied += 1
    return copied


def _copy_all(sources: Sequence[Path], folder: Path) -> None:
    """`cp -a` (owners, modes and links kept; a reflink where the file system has them) of `sources` into `folder`."""
    proc = subprocess.run(
        ["cp", "-a", "--reflink=auto", *map(str, sources), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"copying the PostgreSQL pair into {folder} failed: {proc.stderr.strip()[-400:]}")


def new_primary(layout: PgLayout, stack: str, port: int, archive: str | None = None) -> None:
    run_as_postgres(["cp", "-a", str(layout.template_dir), str(layout.data_dir(stack))])
    with open(layout.data_dir(stack) / "postgresql.auto.conf", "a") as conf:
        conf.write(instance_conf(stack, port, archive))


def pg_basebackup(primary_port: int, target: Path, password: str, *options: str) -> None:
    """`pg_basebackup` from the primary into `target`, streaming its WAL, as user postgres."""
    argv = [str(BIN_DIR / "pg_basebackup"), "-h", process.LOOPBACK, "-p", str(primary_port), "-U", SUPERUSER]
    run_as_postgres([*argv, "-D", str(target), *options, "-X", "stream", "-c", "fast", "--no-sync"], password=password)


def clone_standby(
    layout: PgLayout, stack: str, port: int, primary_port: int, password: str, archive: str | None = None
) -> None:
    """A streaming standby of the primary: pg_basebackup -R writes standby.signal and primary_conninfo."""
    pg_basebackup(primary_port, layout.data_dir(stack), password, "-R")
    with open(layout.data_dir(stack) / "postgresql.auto.conf", "a") as conf:
        conf.write(instance_conf(stack, port, archive))


def base_backup(layout: PgLayout, primary_port: int, password: str) -> None:
    """A tar base backup (base.tar + pg_wal.tar) for point-in-time recovery with the WAL archive."""
    pg_basebackup(primary_port, layout.base_backup_dir, password, "-F", "t")


def conninfo(port: int, dbname: str = "postgres") -> str:
    return psycopg.conninfo.make_conninfo(
        host=process.LOOPBACK, port=str(port), user=SUPERUSER, dbname=dbname, connect_timeout="3"
    )


def connect(port: int, password: str, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(conninfo(port, dbname), password=password, autocommit=True)


def start(
    root: Path,
    layout: PgLayout,
    stack: str,
    port: int,
    password: str,
    timeout: float = 60,
    extra: Sequence[str] = (),
) -> int:
    """Start the postmaster of `stack` (recorded PID) and wait until it accepts connections."""
    data = layout.data_dir(stack)
    with contextlib.suppress(FileNotFoundError):
        # A crash leaves postmaster.pid behind; PostgreSQL checks it itself, we only make sure it is not ours alive.
        stale = int((data / "postmaster.pid").read_text().split()[0])
        if process.alive(stale):
            raise RuntimeError(f"PostgreSQL {stack} is already running as PID {stale}")
    argv = [str(BIN_DIR / "postgres"), "-D", str(data), *extra]
    pid = process.spawn(root, process_name(stack), argv, user=OS_USER)
    wait_ready(port, password, timeout, pid, stack)
    return pid


def wait_ready(port: int, password: str, timeout: float, pid: int, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not process.alive(pid):
            raise RuntimeError(f"PostgreSQL {what} (PID {pid}) exited during start-up; see its log")
        try:
            with connect(port, password) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"PostgreSQL {what} did not accept connections on port {port} within {timeout:.0f} s: {last}")


def live_pid(root: Path, layout: PgLayout, stack: str) -> int | None:
    """The running postmaster of `stack`: the one the lab recorded, else one a script started itself (pg_ctl)."""
    pid = process.read_pid(root, process_name(stack))
    if pid is not None and process.alive(pid):
        return pid
    return adopted_pid(layout, stack)


def stop(root: Path, layout: PgLayout, stack: str, timeout: float = 30) -> None:
    """Clean stop: SIGINT (fast shutdown: disconnect clients, checkpoint), escalating to SIGKILL."""
    pid = live_pid(root, layout, stack)
    if pid is not None:
        stop_pid(pid, timeout)
    process.stop(root, process_name(stack))


def stop_pid(pid: int, timeout: float = 30) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while process.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def crash(root: Path, layout: PgLayout, stack: str) -> int:
    """SIGKILL the postmaster and its backends at once, like a lost host; the next start does crash recovery.

    Returns the PID killed. RuntimeError when `stack` has no live postmaster to kill (a crash that kills nothing is
    no crash) or when the postmaster is still alive 5 s after the SIGKILL."""
    pid = live_pid(root, layout, stack)
    if pid is None:
        raise RuntimeError(
            f"no live postmaster of {stack} to crash (neither {process.pid_file(root, process_name(stack))} nor "
            f"{layout.data_dir(stack) / 'postmaster.pid'} names a running process)"
        )
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    gone = time.monotonic() + 5
    while process.alive(pid) and time.monotonic() < gone:
        time.sleep(0.02)
    if process.alive(pid):
        raise RuntimeError(f"postmaster {pid} of {stack} is still alive 5 s after SIGKILL")
    process.stop(root, process_name(stack))
    return pid


def adopted_pid(layout: PgLayout, stack: str) -> int | None:
    """The live postmaster of a data dir, also when a script started it with pg_ctl rather than through the lab."""
    try:
        pid = int((layout.data_dir(stack) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if process.alive(pid) else None


def create_database(port: int, password: str, dbname: str) -> None:
    with connect(port, password) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    with connect(port, password, dbname) as conn:
        conn.execute(SCHEMA.read_text())


def wait_replayed(primary_port: int, standby_port: int, password: str, timeout: float = 30) -> None:
    """Wait until the standby has replayed everything the primary had written when called."""
    with connect(primary_port, password) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    with connect(standby_port, password) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0", (target,))
            if row.fetchone()[0]:
                return
            time.sleep(0.02)
    raise TimeoutError(f"standby on port {standby_port} did not replay up to {target} within {timeout:.0f} s")


def server_status(port: int, password: str) -> dict[str, object]:
    """Role and replication figures of one server: a primary lists its standbys, a standby its receive/replay."""
    try:
        with connect(port, password) as conn:
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            if not in_recovery:
                rows = conn.execute(
                    "SELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,"
                    " coalesce(extract(epoch FROM replay_lag), 0)::float8 FROM pg_stat_replication"
                ).fetchall()
                standbys = [
                    {"name": name, "state": state, "lag_bytes": lag_bytes, "lag_seconds": lag_seconds}
                    for name, state, lag_bytes, lag_seconds in rows
                ]
                return {"role": "primary", "standbys": standbys}
            receive, replay, lag_seconds, streaming = conn.execute(
                "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
                " CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
                " ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8,"
                " EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
            ).fetchone()
            return {
                "role": "standby",
                "streaming": streaming,
                "receive_lsn": receive,
                "replay_lsn": replay,
                "lag_seconds": lag_seconds,
            }
    except psycopg.OperationalError as exc:
        return {"role": "down", "error": str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"}
