"""Restores that bring a database back: a verified dump into a target database, or the stack's database to a time T.

`restore_dump` refuses a non-empty target unless asked to clean it and checks row counts against those stored with
the dump. The point-in-time entry points (`restore_pitr`, `show_window`, `recover_with_cutover`) hand a validated
`PitrRequest` to the stack's `Database`, which restores by its own means (RDS restore-to-time; base backup + WAL on a
self-managed server, from its archive or from its WAL bucket, `WalBucketCopy`). They return what the command shows.
`find_damage` lists the transactions committed around a time from the WAL (drtopo.database.pitr.damage); a cutover
asked by `--damage-xid` alone takes T from that transaction's commit, and holds the pair's failover lock.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from drtopo.aws import stack_client
from drtopo.backup import store as dump_store
from drtopo.backup import wal
from drtopo.backup.dumps import compare_counts
from drtopo.database import Database, NoDatabase, database_for, pg_tools
from drtopo.database.pitr import cutover, damage
from drtopo.database.pitr.labels import BaseBackup
from drtopo.database.pitr.request import PitrRequest
from drtopo.database.pitr.window import Shown
from drtopo.errors import one_line
from drtopo.failover import lock
from drtopo.outputs import SelfManagedPostgres, StackOutputs
from drtopo.report import BadInput, Clock, Report, Unsafe


@dataclass(frozen=True)
class ArchiveRetrieval:
    """How to bring back a dump from GLACIER or DEEP_ARCHIVE: the retrieval tier, how long the restored copy is kept,
    how long to wait for it (None: the tier's longest typical time) and how often to look."""

    tier: str = "Standard"
    days: int = 2
    wait_seconds: float | None = None
    poll_seconds: float | None = None


def bring_back(
    s3: Any, bucket: str, stored: dump_store.StoredDump, retrieval: ArchiveRetrieval, report: Report, clock: Clock
) -> dump_store.StoredDump | None:
    """Request a restore of an archived dump and wait for it with progress against the typical time of its class
    and tier; None (and a failed check) when it is not readable within the wait."""
    low, high = dump_store.retrieval_estimate(stored.storage_class, retrieval.tier)
    wait = retrieval.wait_seconds if retrieval.wait_seconds is not None else float(high)
    poll = retrieval.poll_seconds if retrieval.poll_seconds is not None else min(300.0, max(5.0, low / 30))
    typical = dump_store.typical_time(stored.storage_class, retrieval.tier)
    if stored.state == "archived":
        asked = dump_store.request_restore(s3, bucket, stored.key, retrieval.tier, retrieval.days)
    else:
        asked = "a restore was already under way"
    report.check("restore request", True, f"{stored.key} in {stored.storage_class}: {asked}; {typical}")

    def progress(waited: float, state: str) -> None:
        clock.say(
            f"{stored.key}: {state} after {dump_store.describe_seconds(waited)} ({typical}, waiting up to "
            f"{dump_store.describe_seconds(wait)})"
        )

    with clock.step(f"wait for the restored copy of {stored.storage_class} ({retrieval.tier}, {typical})") as step:
        readable = dump_store.wait_readable(s3, bucket, stored.key, wait, poll, progress)
        step["typical_seconds"] = [low, high]
    report.measured.update(
        storage_class=stored.storage_class,
        retrieval_tier=retrieval.tier,
        retrieval_typical_seconds=[low, high],
        retrieval_seconds=clock.steps[-1]["seconds"],
    )
    report.check(
        "restored copy readable",
        readable is not None,
        f"after {dump_store.describe_seconds(clock.steps[-1]['seconds'])}"
        if readable
        else f"still not readable after {dump_store.describe_seconds(wait)}; the request stands: run again later",
    )
    return readable


def restore_dump(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    key: str,
    target: str,
    clean: bool,
    dry_run: bool,
    retrieval: ArchiveRetrieval | None = None,
) -> list[str]:
    """Restore the dump `key` into `target` and check its row counts; returns the warnings to show (a corrupt
    dump, which leaves the target untouched)."""
    try:
        target_plain, secret = pg_tools.split_password(target)
    except psycopg.ProgrammingError as exc:
        raise BadInput(f"--target {target!r} is not a libpq connection string ({one_line(exc)})") from None
    try:
        conn = psycopg.connect(target_plain, password=secret, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise Unsafe(f"target {target_plain} is not reachable ({one_line(exc)})") from None
    with conn:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise Unsafe(f"target {target_plain} is a read-only standby; expected a writable database")
        existing = pg_tools.table_counts(conn)
    if existing and not clean:
        raise Unsafe(
            f"target {target_plain} is not empty ({len(existing)} tables, e.g. {next(iter(existing))}); "
            "pass --clean to drop the dump's objects there first"
        )
    s3 = dump_store.s3_client(outputs)
    stored = dump_store.head(s3, outputs.dump_bucket, key)
    retrieval = retrieval or ArchiveRetrieval()
    first = (
        f"request a {retrieval.tier} restore from {stored.storage_class} "
        f"({dump_store.typical_time(stored.storage_class, retrieval.tier)}), then "
        if not stored.readable
        else ""
    )
    if dry_run:
        report.check("plan", True, f"{first}restore {key} into {target_plain}{' after --clean' if existing else ''}")
        return []
    if not stored.readable:
        readable = bring_back(s3, outputs.dump_bucket, stored, retrieval, report, clock)
        if readable is None:
            return []
        stored = readable
    with tempfile.TemporaryDirectory(prefix="drtopo-restore-") as tmp:
        path = Path(tmp) / "dump"
        with clock.step("download"):
            digest = dump_store.download(s3, outputs.dump_bucket, key, path)
        intact = digest == stored.sha256
        report.check("sha256", intact, "matches metadata" if intact else f"got {digest}, metadata {stored.sha256}")
        if not intact:
            return [f"CORRUPT: dump {key} does not match its SHA-256; the target was not touched"]
        with clock.step("pg_restore"):
            pg_tools.restore(path, target_plain, secret, clean=bool(existing))
    with psycopg.connect(target_plain, password=secret, autocommit=True) as conn:
        counts = pg_tools.table_counts(conn)
    compare_counts(report, {t: counts.get(t, 0) for t in stored.row_counts or counts}, stored.row_counts)
    report.measured.update(key=key, bytes=stored.size, restore_seconds=clock.steps[-1]["seconds"])
    return []


def restore_pitr(outputs: StackOutputs, report: Report, clock: Clock, request: PitrRequest) -> None:
    """Restore to `request.time` into a new instance by the database's own means: RDS restore-to-time (when asked, or
    when there is no server here), else base backup + WAL from the server's archive or from its WAL bucket alone."""
    database = database_for(outputs).restorer(request.rds)
    database.check_restore(request)
    copy = WalBucketCopy(stack_client("s3", outputs), outputs.wal_bucket) if request.wal_source == "bucket" else None
    with clock.step(f"point-in-time restore to {request.target.isoformat()} ({database.restore_title(request)})"):
        result = database.restore(request, report, clock, copy)
    report.measured.update(result, restore_seconds=clock.steps[-1]["seconds"])


def show_window(outputs: StackOutputs, report: Report, request: PitrRequest) -> Shown:
    """What can be restored (with `wal_source` "bucket": from the stack's WAL bucket alone), checked and recorded in
    `report`; the command shows its lines, then `Shown.at(T)` (a T outside it is BadInput)."""
    database = database_for(outputs).restorer(request.rds)
    database.check_restore(request)
    copy = WalBucketCopy(stack_client("s3", outputs), outputs.wal_bucket) if request.wal_source == "bucket" else None
    return database.window(report, copy)


def recover_with_cutover(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    request: PitrRequest,
    peer: Callable[[], StackOutputs | None] = lambda: None,
) -> list[str]:
    """Corruption recovery end to end (`Database.cutover`): restore to T, re-apply the writes after T, fence,
    validate, swap in; then the standby of `peer()` (the peer stack's outputs) follows. Without `request.time`, T is
    just before the commit of the earliest `--damage-xid` (read from the WAL). A real run holds the failover lock of
    both stacks of the pair throughout (a promote or failback meanwhile is refused, and this run is refused while
    one of them runs). Returns the lines to show: why T, then a dry run's rows or the cutover's report."""
    database = database_for(outputs).restorer(request.rds)
    database.check_restore(request)
    lines = []
    if request.time is None:
        target, why = damage.target_before(outputs, report, request.damage_xids)
        request = dataclasses.replace(request, time=target)
        lines.append(why)
        clock.say(why)
    partner = peer()
    if request.dry_run:
        return [*lines, *database.cutover(request, report, clock, lambda: _database_or_none(partner))]
    pair = [outputs, *([partner] if partner is not None else [])]
    with lock.held(pair, "cutover", outputs.stack) as locks:
        clock.say(f"lock taken: {', '.join(held.where for held in locks)}")
        report.measured["locks"] = [held.where for held in locks]
        shown = database.cutover(request, report, clock, lambda: _database_or_none(partner))
    if "cutover_at" not in report.measured:  # not cut over: the checks say why
        return [*lines, *shown]
    server = None if request.rds else outputs.self_managed
    return [*lines, *shown, *_cutover_report(outputs, server, report, clock, request.target)]


def _cutover_report(
    outputs: StackOutputs, server: SelfManagedPostgres | None, report: Report, clock: Clock, target: datetime
) -> list[str]:
    """The figures of a cutover that swapped in (on `server`, None on RDS), as they are after the swap, and what is
    left to do."""
    m = report.measured
    m["write_unavailable"] = cutover.write_unavailable(clock.steps, time.time() - clock.elapsed())
    m["sequences_moved"] = cutover.sequences_moved(m.get("passes", []))
    if server is not None:
        # The restored instance now lives in the source's data directory, on its port (its PITR folder is gone).
        m.update(log=str(Path(m["data_dir"]) / "pitr.log"), port=outputs.db_port, host=outputs.db_address)
    lines = cutover.report_lines(m)
    kept = m.get("damaged_kept") or m.get("swap", {}).get("kept")
    left = [f"the damaged copy {kept}: remove it once the data is verified (`validate --against {outputs.peer_stack}`)"]
    if server is not None:
        staging = Path(server.data_dir).parent / f"pitr-{target.strftime('%Y%m%dT%H%M%SZ')}.wal"
        if staging.is_dir():
            left.append(f"the scratch WAL {staging} (shipped to the archive): remove it")
        left.append(
            "the base backups predate the new timeline: take one of it (pg_basebackup -F t -X fetch -c fast -D "
            f"<folder> into {server.base_backup_dir}, then `python -m scripts.wal base --stack "
            f"{outputs.stack} <folder>`) and run `python -m scripts.wal check --stack {outputs.stack}`"
        )
    m["left_to_do"] = left
    return [*lines, *(f"left to do: {line}" for line in left)]


def find_damage(outputs: StackOutputs, report: Report, request: PitrRequest) -> list[str]:
    """The transactions committed around `request.around` (biggest first), read from the archive folder or, with
    `wal_source` "bucket", the stack's WAL bucket, plus the server's pg_wal; the lines of a table."""
    if request.rds:
        raise BadInput(damage.RDS_INSTEAD)
    assert request.around is not None  # PitrRequest.parse sets it for find_damage
    with tempfile.TemporaryDirectory(prefix="drtopo-find-damage-") as folder:
        os.chmod(folder, 0o755)  # pg_waldump runs as the server's user
        bucket = []
        if request.wal_source == "bucket":
            bucket = WalBucketCopy(stack_client("s3", outputs), outputs.wal_bucket).segments(Path(folder))
        found = damage.find_damage(outputs, report, request.around, request.width, request.tables, bucket)
    window = report.measured["window"]
    head = f"transactions committed {window['from']} .. {window['to']}, biggest first"
    narrowed = f", writing {', '.join(request.tables)}" if request.tables else ""
    return [f"{head}{narrowed}:", *damage.table_lines(found)]


def _database_or_none(outputs: StackOutputs | None) -> Database | None:
    if outputs is None:
        return None
    try:
        return database_for(outputs)
    except NoDatabase:
        return None


@dataclass
class WalBucketCopy:
    """The stack's WAL bucket (drtopo.backup.wal) as an archive a self-managed restore copies here and uses alone.
    `fetch` reads the bucket's listing first; `gaps` answers from that listing."""

    s3: Any
    bucket: str
    archive: wal.BucketArchive | None = None

    @property
    def name(self) -> str:
        return f"s3://{self.bucket}"

    def fetch(self, folder: Path, segments: str, report: Report, clock: Clock) -> tuple[Path, Path]:
        archive = wal.read_archive(self.s3, self.bucket)
        if not archive.base_backups:
            raise BadInput(f"s3://{self.bucket} holds no base backup; upload one with `python -m scripts.wal base`")
        with clock.step(f"fetch the archive of s3://{self.bucket} into {folder}"):
            archive_dir, base_dir = wal.materialize(self.s3, archive, folder, segments)
        report.check(
            "WAL bucket",
            True,
            f"s3://{self.bucket}: {len(archive.segments)} segments, base backups {', '.join(archive.base_backups)}",
        )
        self.archive = archive
        return archive_dir, base_dir

    def gaps(self, start_wal: str) -> list[str]:
        if self.archive is None:
            raise RuntimeError(f"the listing of s3://{self.bucket} is read by fetch(), which has not run")
        return wal.chain_gaps(self.s3, self.archive, start_wal)

    def fetch_base(self, backup: BaseBackup) -> None:
        wal.fetch_base_backup(self.s3, self.bucket, backup.path)

    def location(self, backup: BaseBackup) -> str:
        return f"s3://{self.bucket}/{wal.base_key(backup.path.name, '')}"

    def segments(self, folder: Path) -> list[damage.Segment]:
        """The bucket's WAL segments with their upload times, each fetched into `folder` when first read."""
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=wal.WAL_PREFIX):
            for item in page.get("Contents", []):
                name = item["Key"][len(wal.WAL_PREFIX) :]
                if damage.WAL_NAME.match(name):
                    fetch = _fetcher(self.s3, self.bucket, name, folder / name)
                    found.append(damage.Segment(name, item["LastModified"], self.name, None, fetch))
        return found


def _fetcher(s3: Any, bucket: str, name: str, dest: Path) -> Callable[[], Path]:
    def fetch() -> Path:
        if not dest.is_file() and not wal.fetch(s3, bucket, name, dest):
            raise BadInput(f"s3://{bucket} lost WAL segment {name} while it was read")
        return dest

    return fetch
