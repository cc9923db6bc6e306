"""Daily dumps into the tiers their date belongs to, and their proof: run, verify, list.

`run` takes a custom-format `pg_dump` in an exported snapshot (so the row counts stored beside it are exact) and uploads
it with SSE-KMS under every tier of the date. `verify` downloads a dump, checks its SHA-256, reads every block with
`pg_restore`, and optionally restores it into a scratch database and compares row counts. `list_backups` shows the
tiers and flags gaps.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from drtopo.backup import store as dump_store
from drtopo.database import connect as db
from drtopo.database import pg_tools
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput, Clock, Report
from drtopo.tiers import TIERS, dump_key, find_gaps, tiers_for

# What can go wrong while talking to live systems: a failed check (exit 1) with one line, never a traceback.
OPERATIONAL_ERRORS = (
    pg_tools.PgToolError,
    psycopg.Error,
    ClientError,
    BotoCoreError,
    RuntimeError,
    TimeoutError,
)


def run(outputs: StackOutputs, report: Report, clock: Clock, day: date, dry_run: bool) -> list[str]:
    now = datetime.now(UTC)
    taken_at = datetime.combine(day, now.time(), UTC)
    keys = [dump_key(tier, outputs.db_name, taken_at) for tier in tiers_for(day)]
    if dry_run:
        for key in keys:
            print(f"would upload s3://{outputs.dump_bucket}/{key}")
        report.check("plan", True, f"{len(keys)} keys for {day.isoformat()} ({', '.join(tiers_for(day))})")
        return keys
    with tempfile.TemporaryDirectory(prefix="drtopo-dump-") as tmp:
        path = Path(tmp) / "dump"
        with clock.step("pg_dump") as step, db.connect(outputs, autocommit=False) as conn:
            # The counts and the dump see one snapshot, so a restore can be checked row for row.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            counts = pg_tools.table_counts(conn)
            pg_tools.dump(db.conninfo(outputs), db.password(outputs), path, snapshot)
            conn.rollback()
            step["bytes"] = path.stat().st_size
        size = path.stat().st_size
        digest = dump_store.sha256_file(path)
        metadata = {
            "sha256": digest,
            "source": f"{outputs.stack}/{outputs.db_instance_id}",
            "database": outputs.db_name,
            "taken-at": now.isoformat(timespec="seconds"),
        }
        manifest = {
            "sha256": digest,
            "bytes": size,
            "source": metadata["source"],
            "database": outputs.db_name,
            "taken_at": metadata["taken-at"],
            "format": "pg_dump custom",
            "row_counts": counts,
        }
        s3 = dump_store.s3_client(outputs)
        with clock.step("upload") as step:
            dump_store.upload(s3, outputs, outputs.dump_bucket, keys, path, metadata, manifest)
            step["keys"] = keys
    for key in keys:
        stored = dump_store.head(s3, outputs.dump_bucket, key)
        report.check(
            f"uploaded {key}",
            stored.size == size and stored.sha256 == digest and stored.row_counts == counts,
            f"{size} bytes, sha256 {digest[:12]}…, manifest with {len(counts)} tables",
            value=stored.size,
            limit=size,
        )
    dump_seconds = clock.steps[-2]["seconds"]
    report.measured.update(
        keys=keys,
        bytes=size,
        sha256=digest,
        row_counts=counts,
        dump_seconds=dump_seconds,
        upload_seconds=clock.steps[-1]["seconds"],
        dump_mb_per_second=round(size / 1e6 / max(dump_seconds, 1e-6), 2),
    )
    return keys


def verify(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    key: str | None,
    restore_test: bool,
    scratch_dsn: str | None,
) -> None:
    s3 = dump_store.s3_client(outputs)
    key = key or dump_store.latest_key(s3, outputs.dump_bucket, outputs.db_name)
    stored = dump_store.head(s3, outputs.dump_bucket, key)
    report.measured.update(key=key, bytes=stored.size, storage_class=stored.storage_class)
    if not stored.readable:
        report.check(
            "readable", False, f"{key} is {stored.state} in {stored.storage_class}; `restore dump` restores it first"
        )
        return
    with tempfile.TemporaryDirectory(prefix="drtopo-verify-") as tmp:
        path = Path(tmp) / "dump"
        with clock.step("download"):
            digest = dump_store.download(s3, outputs.dump_bucket, key, path)
        intact = check_integrity(report, clock, path, stored, digest)
        if not intact:
            print(f"CORRUPT: dump {key} failed verification; do not restore it", file=sys.stderr)
            return
        if restore_test:
            restore_test_into_scratch(outputs, report, clock, path, stored, scratch_dsn)
    seconds = sum(
        s["seconds"] for s in clock.steps if s["step"] in ("download", "pg_restore --list", "pg_restore read")
    )
    report.measured["verify_mb_per_second"] = round(stored.size / 1e6 / max(seconds, 1e-6), 2)


def check_integrity(report: Report, clock: Clock, path: Path, stored: dump_store.StoredDump, digest: str) -> bool:
    """SHA-256 against the metadata, the table of contents, then every data block; True when all pass."""
    size = path.stat().st_size
    report.check("size", size == stored.size, f"{size} bytes downloaded", value=size, limit=stored.size)
    if stored.sha256 is None:
        report.check("sha256", False, "object has no sha256 metadata; expected one from `backup run`")
    else:
        report.check(
            "sha256",
            digest == stored.sha256,
            "matches metadata" if digest == stored.sha256 else f"got {digest}, metadata says {stored.sha256}",
        )
    try:
        with clock.step("pg_restore --list"):
            entries = pg_tools.restore_list(path)
        data = sum(" TABLE DATA " in e for e in entries)
        report.check("pg_restore --list", bool(entries), f"{len(entries)} entries, {data} with table data")
        with clock.step("pg_restore read"):
            pg_tools.restore_read_all(path)
        report.check("every block readable", True, "pg_restore read the whole archive")
    except pg_tools.PgToolError as exc:
        report.check("pg_restore", False, str(exc))
    return report.ok


def restore_test_into_scratch(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    path: Path,
    stored: dump_store.StoredDump,
    scratch_dsn: str | None,
) -> None:
    """Restore into a throw-away database, compare its counts with those stored at dump time, drop it."""
    expected = stored.row_counts
    name = f"drtopo_verify_{secrets.token_hex(4)}"
    admin_dsn = scratch_dsn or db.conninfo(outputs, dbname="postgres")
    try:
        admin_plain, secret = pg_tools.split_password(admin_dsn)
    except psycopg.ProgrammingError as exc:
        raise BadInput(f"--scratch-dsn is not a libpq connection string ({pg_tools.one_line(exc)})") from None
    secret = secret or db.password(outputs)
    with psycopg.connect(admin_plain, password=secret, autocommit=True) as admin:
        if admin.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            report.check("restore test", False, f"{admin_plain} is a read-only standby; pass --scratch-dsn")
            return
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            target = psycopg.conninfo.make_conninfo(admin_plain, dbname=name)
            with clock.step("restore test"):
                pg_tools.restore(path, target, secret)
            with psycopg.connect(target, password=secret) as conn:
                counts = pg_tools.table_counts(conn)
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    report.measured["restored_counts"] = counts
    compare_counts(report, counts, expected)


def compare_counts(report: Report, counts: dict[str, int], expected: dict[str, int] | None) -> None:
    if expected is None:
        report.check("row counts", False, "the dump has no manifest (nor row-counts metadata) to compare with")
        return
    for table in sorted(set(expected) | set(counts)):
        got, want = counts.get(table), expected.get(table)
        report.check(f"rows {table}", got == want, "restored vs source at dump time", value=got, limit=want)


def list_backups(outputs: StackOutputs, report: Report, today: date) -> None:
    s3 = dump_store.s3_client(outputs)
    dumps = [d for d in dump_store.list_dumps(s3, outputs.dump_bucket) if d[0].database == outputs.db_name]
    now = datetime.now(UTC)
    listing: dict[str, list[dict[str, object]]] = {t: [] for t in TIERS}
    for parsed, key, size, storage_class in sorted(dumps, key=lambda d: (TIERS.index(d[0].tier), d[0].taken_at)):
        age = (now - parsed.taken_at).total_seconds()
        restore = None
        if storage_class in dump_store.ARCHIVED:  # only archived objects need a HEAD to say whether they can be read
            restore = dump_store.head(s3, outputs.dump_bucket, key, with_manifest=False).restore
        state = dump_store.restore_state(storage_class, restore)
        listing[parsed.tier].append(
            {
                "key": key,
                "bytes": size,
                "age_seconds": round(age),
                "storage_class": storage_class,
                "readable_now": dump_store.readable_now(storage_class, restore),
                "state": state,
            }
        )
        print(f"{parsed.tier:<8} {_age(age):>8} {size:>12} B  {storage_class:<12} {state:<12} {key}")
    for tier in TIERS:
        items = listing[tier]
        newest = f", newest {_age(min(int(i['age_seconds']) for i in items))} old" if items else ""
        report.check(f"tier {tier}", True, f"{len(items)} backups{newest}", value=len(items))
    for gap in find_gaps((d[0] for d in dumps), today):
        report.check(f"gap {gap.tier}", False, gap.detail)
    report.measured["backups"] = listing


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"
