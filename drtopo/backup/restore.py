"""Restores that bring a database back: a verified dump into a target database, or the stack's database to a time T.

`restore_dump` refuses a non-empty target unless asked to clean it and checks row counts against those stored with
the dump. The point-in-time entry points (`restore_pitr`, `show_window`, `recover_with_cutover`) hand a validated
`PitrRequest` to the stack's `Database`, which restores by its own means (RDS restore-to-time; base backup + WAL on a
self-managed server, from its archive or from its WAL bucket, `WalBucketCopy`). They return what the command shows.
`find_damage` lists the transactions committed around a time from the WAL (drtopo.database.pitr.damage); a cutover
asked by `--damage-xid` alone takes T from that transaction's commit, holds the pair's failover lock, keeps a journal
beside it (refused when older than the limit, until --restart), and ends with a write probe through the service.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from drtopo.aws import stack_client
from drtopo.backup import store as dump_store
from drtopo.backup import wal
from drtopo.backup.dumps import compare_counts
from drtopo.checks import recovery as recovery_checks
from drtopo.checks import service as service_checks
from drtopo.database import Database, NoDatabase, database_for, pg_tools
from drtopo.database import connect as db
from drtopo.database.pitr import cutover, damage
from drtopo.database.pitr.labels import BaseBackup
from drtopo.database.pitr.recovery import staging_dir, stop_instance
from drtopo.database.pitr.request import PitrRequest
from drtopo.database.pitr.window import Shown
from drtopo.database.self_managed import take_base_backup
from drtopo.errors import one_line
from drtopo.failover import lock
from drtopo.failover.journal import Journal, Runner, S3JournalStore
from drtopo.failover.results import StepResult
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


@dataclass(frozen=True)
class CutoverRecord(StepResult):
    """What one cutover step found or did, as the journal keeps it (the step's own mapping)."""

    details: dict[str, Any] = field(default_factory=dict)


CUTOVER_RESULTS: dict[str, type[StepResult]] = {step: CutoverRecord for step in cutover.CutoverStep}


class JournalledSteps:
    """A cutover's steps (cutover.Steps) through the failover journal (drtopo/failover/journal.py): each recorded
    as it ends; a rerun skips those done, reuses their records, and says so in the report."""

    def __init__(
        self, journal: Journal, clock: Clock, report: Report, after_step: Callable[[str], None] | None = None
    ) -> None:
        self.journal = journal
        self.report = report
        self.runner = Runner(journal, clock, after_step)

    def run(self, name: cutover.CutoverStep, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        record = self.runner.run(name, lambda: CutoverRecord(fn()))  # type: ignore[arg-type]
        if self.runner.resumed_last():
            self.report.check(f"cutover step {name}", True, "done by the interrupted run (journal), not repeated")
        assert isinstance(record, CutoverRecord)
        return record.details

    def done(self, name: cutover.CutoverStep) -> bool:
        return self.journal.done(name)  # type: ignore[arg-type]

    def forget(self, name: cutover.CutoverStep) -> None:
        self.journal.forget(name)  # type: ignore[arg-type]

    def finished(self) -> set[str]:
        return {name for name, rec in self.journal.data["steps"].items() if rec.get("ok")}


def cutover_journal(outputs: StackOutputs, state_dir: Path) -> Journal:
    """The open journal of a cutover of `outputs`' stack (or a new one), beside the failover lock in its
    configuration bucket, as promote's and failback's."""
    store = S3JournalStore(
        dump_store.s3_client(outputs),
        outputs.config_bucket,
        f"cutover-{outputs.stack}",
        encryption=dump_store.encryption_args(outputs),
    )
    return Journal.open("cutover", outputs.stack, state_dir, store, CUTOVER_RESULTS)


def recover_with_cutover(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    request: PitrRequest,
    peer: Callable[[], StackOutputs | None] = lambda: None,
    state_dir: Path | None = None,
    after_step: Callable[[str], None] | None = None,
    max_age_hours: float = 24,
) -> list[str]:
    """Corruption recovery end to end (`Database.cutover`): restore to T, re-apply the writes after T, fence,
    validate, swap in; then the standby of `peer()` (the peer stack's outputs) follows, and (self-managed) a base
    backup of the new timeline goes into the WAL bucket. Without `request.time`, T is just before the commit of the
    earliest `--damage-xid` (read from the WAL). A real run holds the failover lock of both stacks of the pair
    throughout (a promote or failback meanwhile is refused, and this run is refused while one of them runs, unless
    `request.break_lock` takes the lock from a holder that is gone for good) and, on a self-managed server with
    `state_dir`, journals each step (cutover.CutoverStep) beside the lock: a rerun after a crash resumes after the
    last step done, with the T and transactions the journal holds, unless the journal is older than `max_age_hours`
    (Unsafe until `request.restart`; see `_restart` for what a restart does). `after_step`: called with each
    journalled step's name (the crash tests' hook). Returns the lines to show: why T, then a dry run's rows or the
    cutover's report."""
    database = database_for(outputs).restorer(request.rds)
    database.check_restore(request)
    partner = peer()
    if request.dry_run:
        request, lines = _with_target(outputs, report, clock, request)
        return [*lines, *database.cutover(request, report, clock, lambda: _database_or_none(partner))]
    server = None if request.rds else outputs.self_managed
    pair = [outputs, *([partner] if partner is not None else [])]
    with lock.held(pair, "cutover", outputs.stack, request.break_lock) as locks:
        clock.say(f"lock taken: {', '.join(held.where for held in locks)}")
        report.measured["locks"] = [held.where for held in locks]
        journal = cutover_journal(outputs, state_dir) if server is not None and state_dir is not None else None
        if journal is not None and server is not None and state_dir is not None:
            if request.restart and journal.resumed:
                left = _restart(journal, outputs, server, report, clock)
                if left is not None:  # swapped in already: nothing is cut over again
                    return left
                journal = cutover_journal(outputs, state_dir)
            journal.refuse_stale(
                max_age_hours, "failover.journalMaxAgeHours", "check the database and what that run left beside it"
            )
        steps = JournalledSteps(journal, clock, report, after_step) if journal is not None else None
        resumed = journal is not None and journal.resumed
        if resumed:
            request, lines = _resumed(journal, report, clock, request)
        else:
            request, lines = _with_target(outputs, report, clock, request)
        try:
            shown = database.cutover(request, report, clock, lambda: _database_or_none(partner), steps)
            if "cutover_at" in report.measured:
                report.measured["write_probe"] = _service_write_probe(outputs, report, clock)
            if "cutover_at" in report.measured and server is not None:
                stamp = request.target.strftime("%Y%m%dT%H%M%SZ")
                run = steps or cutover.Untracked(clock)
                made = run.run(
                    cutover.CutoverStep.BASE_BACKUP, lambda: _base_backup_of_new_timeline(outputs, server, clock, stamp)
                )
                report.measured["base_backup_after"] = made
                wal.check_chain(dump_store.s3_client(outputs), outputs.wal_bucket, report)
        except BaseException:
            if steps is not None:
                _cutover_stopped(steps, report, clock)
            raise
        if steps is not None:
            report.measured["cutover_steps"] = steps.runner.timeline
            report.measured["resumed"] = resumed
            if "cutover_at" in report.measured:
                report.measured["journal"] = steps.journal.close()
            else:
                _cutover_stopped(steps, report, clock)
    if "cutover_at" not in report.measured:  # not cut over: the checks say why
        return [*lines, *shown]
    return [*lines, *shown, *_cutover_report(outputs, server, report)]


def _with_target(
    outputs: StackOutputs, report: Report, clock: Clock, request: PitrRequest
) -> tuple[PitrRequest, list[str]]:
    """The request with its T: as given, or just before the earliest damaging transaction's commit (and why)."""
    if request.time is not None:
        return request, []
    target, why = damage.target_before(outputs, report, request.damage_xids)
    clock.say(why)
    return dataclasses.replace(request, time=target), [why]


def _resumed(journal: Journal, report: Report, clock: Clock, request: PitrRequest) -> tuple[PitrRequest, list[str]]:
    """The request of an interrupted cutover: its T and transactions as the journal holds them; Unsafe when this
    run asks for another T or other transactions."""
    restored = journal.data["steps"].get(cutover.CutoverStep.RESTORE, {}).get("result", {}).get("details", {})
    target = datetime.fromisoformat(restored["target_time"])
    xids = sorted(restored.get("damage_xids", []))
    asked_time = request.time is not None and request.time != target
    if xids != sorted(request.damage_xids) or asked_time:
        raise Unsafe(
            f"an interrupted cutover of {journal.data['stack']} (started {journal.data['started_at']}, T "
            f"{target.isoformat()}, --damage-xid {xids}) is open in {journal.where}; rerun it with those to resume it"
        )
    why = (
        f"resuming the cutover started {journal.data['started_at']} (journal {journal.where}): T {target.isoformat()}"
        f", transactions {xids}"
    )
    clock.say(why)
    report.measured["target_time"] = target.isoformat()
    return dataclasses.replace(request, time=target), [why]


def _service_write_probe(outputs: StackOutputs, report: Report, clock: Clock) -> dict[str, Any]:
    """The service writes again after the swap: one probe row through its API, removed again from the database."""

    def remove(row_id: int, transaction_id: str) -> int:
        with db.connect(outputs) as conn:
            return recovery_checks.remove_probe_row(conn, row_id, transaction_id)

    url = outputs.region_service_url or outputs.service_url  # this region's own service: the cut-over database's
    with clock.step(f"write probe through the service at {url}") as step:
        probe = service_checks.write_probe(report, url, remove)
        step.update(acknowledged=probe["acknowledged"], attempts=probe["attempts"])
    return probe


def _restart(
    journal: Journal, outputs: StackOutputs, server: SelfManagedPostgres, report: Report, clock: Clock
) -> list[str] | None:
    """`--restart`: drop an interrupted cutover's journal. Before its swap, the restored instance it left (never
    served: it holds T plus copies of rows the damaged database still has) is stopped and removed with its staged WAL,
    so a new cutover can run (None). After its swap the service runs on that instance: a new cutover would restore
    over it, so nothing is cut over again, and the lines say what the interrupted run left undone."""
    done = {name for name, rec in journal.data["steps"].items() if rec.get("ok")}
    restored = journal.data["steps"].get(cutover.CutoverStep.RESTORE, {}).get("result", {}).get("details", {})
    dropped = {"journal": journal.where, "started_at": journal.data["started_at"], "steps_done": sorted(done)}
    report.measured["restarted"] = dropped
    if cutover.CutoverStep.SWAP in done:
        journal.discard()
        undone = [str(s) for s in cutover.CUTOVER_PLAN if s not in done]
        detail = (
            f"journal {dropped['journal']} dropped; its run (started {dropped['started_at']}) had swapped the "
            f"restored instance in, so nothing is cut over again; steps it left undone: {', '.join(undone) or 'none'}"
        )
        report.check("restart", True, detail)
        clock.say(detail)
        return [
            detail,
            f"left to do: {cutover.undone_advice(undone, outputs.stack, outputs.peer_stack)}",
        ]
    removed = []
    data_dir = Path(restored["data_dir"]) if restored.get("data_dir") else None
    if data_dir is not None and data_dir.resolve() != Path(server.data_dir).resolve():
        with clock.step(f"stop and remove the interrupted run's restored instance {data_dir} (never served)"):
            if data_dir.is_dir():
                stop_instance(server, data_dir)
            for path in (data_dir, staging_dir(data_dir)):
                if path.is_dir():
                    shutil.rmtree(path)
                    removed.append(str(path))
    journal.discard()
    dropped["removed"] = removed
    fenced = cutover.CutoverStep.FENCE in done
    report.check(
        "restart",
        True,
        f"journal {dropped['journal']} dropped (steps done: {', '.join(sorted(done))}); removed "
        f"{', '.join(removed) or 'nothing'}"
        + ("; the damaged database stays fenced until this run swaps in" if fenced else ""),
    )
    return None


def _cutover_stopped(steps: JournalledSteps, report: Report, clock: Clock) -> None:
    """A cutover that stopped: its journal is dropped when nothing had changed yet, else kept for a rerun."""
    done = steps.finished()
    report.measured["cutover_steps"] = steps.runner.timeline
    if not done & cutover.CUTOVER_MUTATING:
        steps.journal.discard()
        return
    last = next((str(s) for s in reversed(cutover.CUTOVER_PLAN) if s in done), "")
    report.measured["journal_open"] = steps.journal.where
    clock.say(
        f"the cutover stopped after step {last}: rerun the same command to resume (journal {steps.journal.where})"
    )


def _base_backup_of_new_timeline(
    outputs: StackOutputs, server: SelfManagedPostgres, clock: Clock, stamp: str
) -> dict[str, Any]:
    """A tar base backup of the cut-over server (the new timeline) beside the others, then into the WAL bucket, so
    that a later restore need not replay from before the fork."""
    folder = Path(server.base_backup_dir) / f"after-cutover-{stamp}"
    with clock.step(f"base backup of the new timeline into {folder}"):
        take_base_backup(outputs, folder)
    with clock.step(f"upload it to s3://{outputs.wal_bucket}"):
        start = wal.push_base_backup(dump_store.s3_client(outputs), outputs, folder)
    return {"folder": str(folder), "start_wal": start, "bucket": f"s3://{outputs.wal_bucket}/{wal.base_key(start, '')}"}


def _cutover_report(outputs: StackOutputs, server: SelfManagedPostgres | None, report: Report) -> list[str]:
    """The figures of a cutover that swapped in (on `server`, None on RDS), as they are after the swap, and what is
    left to do."""
    m = report.measured
    m["write_unavailable"] = cutover.write_unavailable(m.get("fenced_from"), m.get("writable_at"))
    m["sequences_moved"] = cutover.sequences_moved(m.get("passes", []))
    if server is not None:
        # The restored instance now lives in the source's data directory, on its port (its PITR folder is gone).
        m.update(log=str(Path(m["data_dir"]) / "pitr.log"), port=outputs.db_port, host=outputs.db_address)
    lines = cutover.report_lines(m)
    kept = m.get("damaged_kept") or m.get("swap", {}).get("kept")
    verify = f"`python -m scripts.validate --stack {outputs.stack} --against {outputs.peer_stack}`"
    if server is None:
        return [*lines, f"left to do: the damaged instance {kept}: delete it once the data is verified ({verify})"]
    scratch = [p for p in (kept, m.get("scratch_wal")) if p and Path(p).is_dir()]
    cleanup = f"python -m scripts.restore cleanup --stack {outputs.stack} {' '.join(scratch)}"
    left = [
        f"verify the data ({verify}); the write probe above showed whether the service writes",
        f"remove the damaged copy and the scratch WAL (shipped to the archive) once verified: `{cleanup} --dry-run`, "
        f"then `{cleanup}`",
    ]
    made = m.get("base_backup_after")
    if made:
        lines.append(
            f"base backup of the new timeline: {made['folder']} and {made['bucket']}; "
            f"`python -m scripts.wal check --stack {outputs.stack}` checks the bucket's chain"
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


def cleanup(outputs: StackOutputs, report: Report, paths: list[Path], dry_run: bool) -> list[str]:
    """Remove what cutovers of `outputs`' self-managed server left beside its data directory: the `paths` named (or,
    none named, every damaged copy and scratch WAL folder found there), each checked by cutover.removable first (the
    live data directory, a link, anything else or a folder a server runs in is BadInput, and nothing is removed).
    With `dry_run` only the lines of what would go. Returns the lines to show."""
    server = outputs.self_managed
    if server is None:
        raise BadInput(
            f"{outputs.stack} has no self-managed server here; on RDS the damaged instance is kept as "
            "<id>-damaged-<T> with deletion protection: turn it off and delete the instance once verified"
        )
    data_dir = Path(server.data_dir)
    chosen = [cutover.removable(data_dir, p) for p in paths] if paths else cutover.left_behind(data_dir)
    chosen = [cutover.removable(data_dir, p) for p in chosen]
    if not chosen:
        report.check("cleanup", True, f"nothing a cutover left beside {data_dir}")
        return []
    sizes = {p: cutover.size_of(p) for p in chosen}
    report.measured["cleanup"] = {str(p): size for p, size in sizes.items()}
    verb = "would remove" if dry_run else "removed"
    lines = [f"{verb} {p} ({size / 2**20:.1f} MiB)" for p, size in sizes.items()]
    if not dry_run:
        for path in chosen:
            shutil.rmtree(path)
    total = sum(sizes.values()) / 2**20
    report.check(
        "cleanup",
        True,
        f"{verb} {len(chosen)} folders ({total:.1f} MiB); the live data directory {data_dir} is left as it is",
    )
    return lines
