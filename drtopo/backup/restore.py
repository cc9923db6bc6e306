"""Restores that bring a database back: a verified dump into a target database, or the stack's database to a time T.

`restore_dump` refuses a non-empty target unless asked to clean it and checks row counts against those stored with
the dump; `restore_pitr` makes a new RDS instance, or for a self-managed PostgreSQL (the lab) base backup + WAL archive
in a new data directory; `show_window` prints what can be restored and the base backup a time T would use.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from drtopo.aws import stack_client
from drtopo.backup import store as dump_store
from drtopo.backup import wal
from drtopo.backup.dumps import compare_counts
from drtopo.database import connect as db
from drtopo.database import fence, pg_tools, pitr, reapply, replication
from drtopo.database import standby as standby_mod
from drtopo.errors import one_line
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
) -> None:
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
        return
    if not stored.readable:
        readable = bring_back(s3, outputs.dump_bucket, stored, retrieval, report, clock)
        if readable is None:
            return
        stored = readable
    with tempfile.TemporaryDirectory(prefix="drtopo-restore-") as tmp:
        path = Path(tmp) / "dump"
        with clock.step("download"):
            digest = dump_store.download(s3, outputs.dump_bucket, key, path)
        intact = digest == stored.sha256
        report.check("sha256", intact, "matches metadata" if intact else f"got {digest}, metadata {stored.sha256}")
        if not intact:
            print(f"CORRUPT: dump {key} does not match its SHA-256; the target was not touched", file=sys.stderr)
            return
        with clock.step("pg_restore"):
            pg_tools.restore(path, target_plain, secret, clean=bool(existing))
    with psycopg.connect(target_plain, password=secret, autocommit=True) as conn:
        counts = pg_tools.table_counts(conn)
    compare_counts(report, {t: counts.get(t, 0) for t in stored.row_counts or counts}, stored.row_counts)
    report.measured.update(key=key, bytes=stored.size, restore_seconds=clock.steps[-1]["seconds"])


def restore_pitr(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    target: datetime,
    *,
    rds: bool = False,
    target_dir: Path | None = None,
    target_port: int | None = None,
    target_instance: str | None = None,
    dry_run: bool = False,
    wal_source: str = "archive",
) -> None:
    """Restore to `target` with RDS (when asked, or when the outputs have no self-managed PostgreSQL) or from the
    base backup and WAL archive; the target flags of the other kind are bad input."""
    use_rds = rds or outputs.self_managed is None
    if use_rds and (target_dir or target_port):
        raise BadInput("--target-dir/--target-port are for a self-managed restore; RDS takes --target-instance")
    if not use_rds and target_instance:
        raise BadInput(
            "--target-instance is for an RDS restore (add --rds); self-managed takes --target-dir/--target-port"
        )
    _check_wal_source(use_rds, wal_source)
    kind = "RDS" if use_rds else f"self-managed, WAL from the {wal_source}"
    with clock.step(f"point-in-time restore to {target.isoformat()} ({kind})"):
        if use_rds:
            result = pitr.restore_rds(outputs, target, report, clock, target_instance, dry_run)
        elif wal_source == "bucket":
            result = _restore_from_bucket(outputs, target, report, clock, target_dir, target_port, dry_run)
        else:
            assert outputs.self_managed is not None
            result = pitr.restore_self_managed(
                outputs, outputs.self_managed, target, report, clock, target_dir, target_port, dry_run
            )
    report.measured.update(result, restore_seconds=clock.steps[-1]["seconds"])


WAL_SOURCES = ("archive", "bucket")


def _check_wal_source(use_rds: bool, wal_source: str) -> None:
    if use_rds and wal_source != "archive":
        raise BadInput(f"--wal-source {wal_source} is for a self-managed restore; RDS replays its own logs")


def bucket_copy(
    s3: Any, outputs: StackOutputs, report: Report, clock: Clock, folder: Path, segments: str = "all"
) -> tuple[SelfManagedPostgres, wal.BucketArchive]:
    """The stack's self-managed settings with the archive and base backups replaced by a local copy of what its WAL
    bucket holds (`wal.materialize`): a restore from it uses the bucket's archive and nothing else."""
    assert outputs.self_managed is not None
    archive = wal.read_archive(s3, outputs.wal_bucket)
    if not archive.base_backups:
        raise BadInput(f"s3://{outputs.wal_bucket} holds no base backup; upload one with `python -m scripts.wal base`")
    with clock.step(f"fetch the archive of s3://{outputs.wal_bucket} into {folder}"):
        archive_dir, base_dir = wal.materialize(s3, archive, folder, segments)
    report.check(
        "WAL bucket",
        True,
        f"s3://{outputs.wal_bucket}: {len(archive.segments)} segments, base backups {', '.join(archive.base_backups)}",
    )
    copy = outputs.self_managed.model_copy(update={"archive_dir": str(archive_dir), "base_backup_dir": str(base_dir)})
    return copy, archive


def _restore_from_bucket(
    outputs: StackOutputs,
    target: datetime,
    report: Report,
    clock: Clock,
    target_dir: Path | None,
    target_port: int | None,
    dry_run: bool,
) -> dict[str, Any]:
    """Point-in-time restore from the WAL bucket alone: flush the source (so the bucket holds a commit after T),
    copy the bucket's archive locally, refuse a gap after the chosen base backup before any replay, fetch that base
    backup, replay. The copy is removed afterwards."""
    pg = outputs.self_managed
    if pg is None:
        raise BadInput("--wal-source bucket needs a self-managed PostgreSQL (selfManaged in the outputs)")
    if not dry_run:
        report.check("source archive", True, pitr.flush_archive(outputs, clock))
    folder = Path(pg.data_dir).parent / f"wal-bucket-{target.strftime('%Y%m%dT%H%M%SZ')}"
    shutil.rmtree(folder, ignore_errors=True)
    s3 = stack_client("s3", outputs)
    try:
        copy, archive = bucket_copy(s3, outputs, report, clock, folder, "newest" if dry_run else "all")
        chosen = pitr.choose_base_backup(
            pitr.find_base_backups(Path(copy.base_backup_dir), Path(copy.archive_dir)), target
        )
        gaps = wal.chain_gaps(s3, archive, chosen.start_wal)
        report.measured["wal_gaps"] = gaps
        if gaps:
            raise BadInput(
                f"s3://{outputs.wal_bucket} misses {len(gaps)} WAL segments after base backup {chosen.start_wal}, "
                f"first {gaps[0]}: a restore to {target.isoformat()} cannot replay past it"
            )
        report.check("WAL chain", True, f"no gap in s3://{outputs.wal_bucket} from {chosen.start_wal} on")
        return pitr.restore_self_managed(
            outputs,
            copy,
            target,
            report,
            clock,
            target_dir,
            target_port,
            dry_run,
            fetch_base=lambda backup: wal.fetch_base_backup(s3, outputs.wal_bucket, backup.path),
            flush=False,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def show_window(
    outputs: StackOutputs, report: Report, target: datetime | None, rds: bool = False, wal_source: str = "archive"
) -> pitr.Window:
    """Print the restorable window (and for T the base backup it would use); a T outside it is BadInput. With
    `wal_source` "bucket" the window and the chain are those of the stack's WAL bucket."""
    use_rds = rds or outputs.self_managed is None
    _check_wal_source(use_rds, wal_source)
    if use_rds or wal_source == "archive":
        return _show_window(outputs, report, target, use_rds, None)
    s3 = stack_client("s3", outputs)
    with tempfile.TemporaryDirectory(prefix="drtopo-wal-window-") as folder:
        copy, archive = bucket_copy(s3, outputs, report, Clock(), Path(folder), "newest")
        return _show_window(outputs, report, target, False, (copy, archive, s3))


def _show_window(
    outputs: StackOutputs,
    report: Report,
    target: datetime | None,
    use_rds: bool,
    bucket: tuple[SelfManagedPostgres, wal.BucketArchive, Any] | None,
) -> pitr.Window:
    now = datetime.now(UTC)
    if use_rds:
        window = pitr.window_rds(pitr.describe_source(stack_client("rds", outputs), outputs), now)
        what = f"instance {outputs.db_instance_id}'s"
    else:
        pg = bucket[0] if bucket else outputs.self_managed
        assert pg is not None
        window = pitr.window_self_managed(outputs, pg, now)
        what = f"s3://{outputs.wal_bucket}'s" if bucket else "the self-managed"

    def where(backup: pitr.BaseBackup) -> str:
        return f"s3://{outputs.wal_bucket}/{wal.base_key(backup.path.name, '')}" if bucket else str(backup.path)

    print(f"earliest restorable  {window.earliest.isoformat()}")
    print(f"latest restorable    {window.latest.isoformat()}  ({window.latest_basis})")
    for backup in window.backups:
        print(f"base backup          {where(backup)}  consistent at {backup.consistent_at.isoformat()}")
    report.measured.update(
        earliest=window.earliest.isoformat(),
        latest=window.latest.isoformat(),
        latest_basis=window.latest_basis,
        base_backups=[{"path": where(b), "consistent_at": b.consistent_at.isoformat()} for b in window.backups],
    )
    report.check("restorable window", True, window.describe())
    if not use_rds and window.backups:
        oldest = min(window.backups, key=lambda b: b.start_time)
        if bucket:
            gaps = wal.chain_gaps(bucket[2], bucket[1], oldest.start_wal)
        else:
            assert outputs.self_managed is not None
            gaps = pitr.check_wal_chain(Path(outputs.self_managed.archive_dir), oldest)
        report.measured["wal_gaps"] = gaps
        archived = f"s3://{outputs.wal_bucket}" if bucket else "the archive"
        report.check(
            "WAL chain",
            not gaps,
            f"no gap from {oldest.start_wal} (base backup {where(oldest)}) to the newest segment in {archived}"
            if not gaps
            else f"{len(gaps)} segments missing in {archived}, first {gaps[0]}: a restore cannot replay past it",
            value=len(gaps),
            limit=0,
        )
    if target is None:
        return window
    pitr.check_window(target, window.earliest, window.latest, what)
    if use_rds:
        uses = "the automated backup RDS picks itself, then its transaction logs to T"
    else:
        chosen = pitr.choose_base_backup(list(window.backups), target)
        uses = f"base backup {where(chosen)} (consistent at {chosen.consistent_at.isoformat()}), then WAL to T"
        report.measured["base_backup"] = where(chosen)
    print(f"restore to {target.isoformat()} uses {uses}")
    report.check("target in window", True, f"{target.isoformat()} uses {uses}")
    return window


def _print_rows(plans: list[reapply.TablePlan], left: dict[str, list[Any]], limit: int = 50) -> None:
    for plan in plans:
        keys = left.get(plan.table, [])
        shown = ", ".join(str(k) for k in keys[:limit]) + (f", … {len(keys) - limit} more" if len(keys) > limit else "")
        print(
            f"would re-apply {len(keys)} rows of {plan.table} ({plan.key}: {shown or 'none'}); "
            f"{len(plan.to_copy) - len(keys)} written by the damage left as at T; "
            f"{len(plan.deleted)} deleted after T kept as at T"
        )


def recover_with_cutover(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    target: datetime,
    damage_xids: list[int],
    *,
    target_dir: Path | None = None,
    target_port: int | None = None,
    dry_run: bool = False,
    peer: StackOutputs | None = None,
) -> None:
    """Corruption recovery end to end on a self-managed PostgreSQL: restore to T into a new instance, re-apply what
    the damaged database acknowledged after T (never the damaging transactions' rows), fence the damaged database,
    re-apply what came in meanwhile, validate, then the rename swap: the restored instance takes the damaged one's
    data directory and endpoint, the damaged one is kept, renamed; last, `peer`'s standby is rebuilt from the
    restored instance. With `dry_run` the restore runs into a scratch instance only to find the rows, which are
    printed; the source and the service are left as they are."""
    pg = outputs.self_managed
    if pg is None:
        raise BadInput("this cutover needs a self-managed PostgreSQL (selfManaged in the outputs); RDS has its own")
    if not damage_xids:
        raise BadInput("--cutover needs --damage-xid XID (the damaging transaction: it is never re-applied)")
    stamp = target.strftime("%Y%m%dT%H%M%SZ")
    target_dir = (target_dir or Path(pg.data_dir).parent / f"pitr-{stamp}").resolve()
    if target_dir.parent.stat().st_dev != Path(pg.data_dir).parent.stat().st_dev:
        raise BadInput(f"--target-dir {target_dir} is on another file system than {pg.data_dir}; the swap renames it")
    with clock.step(f"point-in-time restore to {target.isoformat()} (self-managed, for cutover)"):
        restored = pitr.restore_self_managed(
            outputs, pg, target, report, clock, target_dir, target_port, dry_run=False, staging=not dry_run
        )
    report.measured.update(restored, restore_seconds=clock.steps[-1]["seconds"])
    secret = db.password(outputs)
    if dry_run:
        try:
            with (
                db.connect(outputs) as damaged,
                psycopg.connect(restored["conninfo"], password=secret, autocommit=True) as new,
            ):
                plans, _ = reapply.find(damaged, new)
                left = reapply.unreplayed(damaged, new, damage_xids)
        finally:
            pitr.stop_instance(pg, target_dir)
            shutil.rmtree(target_dir, ignore_errors=True)
        _print_rows(plans, left)
        report.measured["would_reapply"] = left
        report.check(
            "plan",
            True,
            f"re-apply {sum(len(k) for k in left.values())} rows, then cut over; "
            "the scratch restore was removed, nothing else changed",
        )
        return

    def settle(damaged: psycopg.Connection, new: psycopg.Connection) -> dict[str, str]:
        pitr.wait_archived(new)  # every re-applied row's WAL is in the staging folder before the swap
        return pitr.read_settings(damaged)

    outcome = _reapply_until_fenced(
        outputs, report, clock, restored["conninfo"], damage_xids, lambda: fence.fence_postgres(outputs), settle
    )
    if outcome is None:
        return
    source_settings = outcome.settled
    kept, shipped = pitr.swap_in(pg, target_dir, source_settings, stamp, clock)
    endpoint_conninfo = db.conninfo(outputs)
    with clock.step("wait until the restored instance is writable at the source's endpoint"):
        pitr.wait_promoted(endpoint_conninfo, secret, Path(pg.data_dir) / "pitr.log", 60)
    report.check(
        "cutover", True, f"restored instance serves {outputs.db_address}:{outputs.db_port}; damaged kept in {kept}"
    )
    rebuild_peer_standby(outputs, peer, report, clock)
    report.measured.update(
        outcome.measured(),
        cutover_at=time.time(),
        damaged_kept=str(kept),
        wal_shipped=shipped,
        data_dir=pg.data_dir,
        conninfo=endpoint_conninfo,
    )


def rebuild_peer_standby(outputs: StackOutputs, peer: StackOutputs | None, report: Report, clock: Clock) -> None:
    """After a cutover the peer's standby still follows the damaged instance's timeline (it replayed the damage):
    rebuild it as a standby of the restored instance (pg_rewind back to the fork at T, else a fresh base backup),
    then wait until it has replayed the restored instance's current position, so the stack is protected again."""
    if peer is None or peer.self_managed is None:
        report.skip(
            "standby",
            f"no self-managed outputs of the peer {outputs.peer_stack} beside this stack's: its standby still follows "
            "the damaged timeline; rebuild it (`scripts.failback --stack "
            f"{outputs.peer_stack}` or pg_basebackup)",
        )
        return
    try:
        with db.connect(peer) as conn:
            standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except psycopg.OperationalError as exc:
        report.skip("standby", f"{peer.stack}'s database does not answer ({one_line(exc)}); rebuild it later")
        return
    if not standby:
        report.skip("standby", f"{peer.stack}'s database is a primary, not this stack's standby: left as it is")
        return
    try:
        with clock.step(f"rebuild {peer.stack}'s standby from the restored instance"):
            result = standby_mod.rebuild_postgres(peer, outputs)
        with db.connect(outputs) as primary, db.connect(peer) as conn:
            lsn = primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            with clock.step(f"wait until {peer.stack}'s standby has replayed {lsn}"):
                waited = replication.wait_replayed(conn, lsn, 120)
    except (standby_mod.StandbyError, TimeoutError, psycopg.Error) as exc:
        # The cutover stands (the service writes to the restored instance); only the protection is missing.
        report.check("standby", False, f"{peer.stack} not rebuilt: {one_line(exc)}; rebuild it by hand")
        return
    report.check(
        "standby",
        True,
        f"{peer.stack} rebuilt as a standby of the restored instance by {result['postgres']}; replayed {lsn} "
        f"{waited:.1f} s later",
    )


@dataclass
class ReapplyOutcome:
    """What the re-apply passes did, the fence they straddled, and what was read from both sides at the end."""

    passes: list[reapply.ReapplyResult]
    copied: dict[str, set[Any]]
    excluded: dict[str, int]
    fenced: dict[str, Any]
    fenced_at: float
    settled: Any

    def measured(self) -> dict[str, Any]:
        rows = {t: len(keys) for t, keys in self.copied.items()}
        return {
            "rows_reapplied": sum(rows.values()),
            "rows_reapplied_per_table": rows,
            "rows_excluded_as_damage": self.excluded,
            "rows_deleted_after_t_kept": {t.table: t.deleted_kept for t in self.passes[-1].tables},
            "passes": [p.to_dict() for p in self.passes],
            "fence": self.fenced,
            "fenced_at": self.fenced_at,
        }


def _reapply_until_fenced(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    restored_conninfo: str,
    damage_xids: list[int],
    fence_damaged: Callable[[], dict[str, Any]],
    settle: Callable[[psycopg.Connection, psycopg.Connection], Any],
) -> ReapplyOutcome | None:
    """Re-apply while the damaged database serves, fence it, re-apply the rest, validate; None (and a failed check)
    when something acknowledged after T is still missing, in which case nothing is cut over."""
    secret = db.password(outputs)
    copied: dict[str, set[Any]] = {}
    excluded: dict[str, int] = {}
    passes = []

    def one_pass(name: str) -> None:
        with (
            clock.step(name) as step,
            db.connect(outputs) as damaged,
            psycopg.connect(restored_conninfo, password=secret, autocommit=True) as new,
        ):
            result = reapply.reapply(damaged, new, damage_xids)
            step.update(rows=result.rows_reapplied, compare_seconds=round(result.compare_seconds, 3))
        for t in result.tables:
            copied.setdefault(t.table, set()).update(result.copied_keys.get(t.table, []))
            excluded[t.table] = max(excluded.get(t.table, 0), t.excluded_damage)
        passes.append(result)

    one_pass("re-apply the writes after T (the damaged database still serving)")
    with clock.step("fence the damaged database (read-only, sessions ended)"):
        fenced = fence_damaged()
        fenced["proof"] = fence.prove_read_only(outputs)
    fenced_at = time.time()
    report.check("damaged database fenced", True, fenced["proof"])
    one_pass("re-apply what arrived until the fence")
    with (
        clock.step("validate: nothing acknowledged after T is missing"),
        db.connect(outputs) as damaged,
        psycopg.connect(restored_conninfo, password=secret, autocommit=True) as new,
    ):
        left = reapply.unreplayed(damaged, new, damage_xids)
        settled = settle(damaged, new)
    missing = {t: keys for t, keys in left.items() if keys}
    report.check(
        "restored holds every write after T",
        not missing,
        "no key inserted or changed after T is missing" if not missing else f"still differing: {missing}",
        value=sum(len(k) for k in missing.values()),
        limit=0,
    )
    if missing:
        report.check("cutover", False, f"not cut over: the restored instance stays at {restored_conninfo}")
        return None
    return ReapplyOutcome(passes, copied, excluded, fenced, fenced_at, settled)


def recover_with_cutover_rds(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    target: datetime,
    damage_xids: list[int],
    *,
    target_instance: str | None = None,
    dry_run: bool = False,
) -> None:
    """Corruption recovery on RDS: restore to T as a new instance, the same re-apply, fence (read-only parameter
    group), validation, then the rename swap: the damaged instance is kept as `<id>-damaged-<T>`, the restored one
    takes `<id>` and with it the endpoint. The dry run prints the plan only: the rows are known once the restored
    instance exists."""
    if not damage_xids:
        raise BadInput("--cutover needs --damage-xid XID (the damaging transaction: it is never re-applied)")
    kept = pitr.kept_identifier(outputs.db_instance_id, target)
    with clock.step(f"point-in-time restore to {target.isoformat()} (RDS, for cutover)"):
        restored = pitr.restore_rds(outputs, target, report, clock, target_instance, dry_run)
    report.measured.update(restored, restore_seconds=clock.steps[-1]["seconds"], damaged_kept=kept)
    name = restored["target_instance"]
    if dry_run:
        report.check(
            "plan",
            True,
            f"restore as {name}, re-apply the writes after T except transaction(s) {damage_xids}, fence "
            f"{outputs.db_instance_id}, validate, rename {outputs.db_instance_id} -> {kept} (kept) and "
            f"{name} -> {outputs.db_instance_id}; the rows to re-apply are listed once {name} exists",
        )
        return
    restored_conninfo = psycopg.conninfo.make_conninfo(
        host=restored["address"],
        port=str(restored["port"]),
        user=outputs.db_user,
        dbname=outputs.db_name,
        sslmode="require",
        connect_timeout="10",
    )
    outcome = _reapply_until_fenced(
        outputs,
        report,
        clock,
        restored_conninfo,
        damage_xids,
        lambda: fence.fence_rds(outputs),
        lambda damaged, new: None,
    )
    if outcome is None:
        return
    swapped = pitr.rds_rename_swap(stack_client("rds", outputs), outputs.db_instance_id, name, target, clock)
    report.check(
        "cutover", True, f"{name} now serves as {outputs.db_instance_id}; the damaged instance is kept as {kept}"
    )
    report.measured.update(outcome.measured(), swap=swapped, cutover_at=time.time())
