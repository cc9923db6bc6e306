"""Daily dumps into the tiers their date belongs to, and their proof: run, verify, list.

`run` takes a custom-format `pg_dump` in an exported snapshot (so the row counts stored beside it are exact) and uploads
it with SSE-KMS under every tier of the date. `verify` downloads a dump, checks its SHA-256, reads every block with
`pg_restore`, and optionally restores it into a scratch database and compares row counts. `list_backups` shows the
tiers and flags gaps. Nothing here prints: each returns what the command shows (the keys a dry run would upload, a
dump found corrupt, the listing).
"""

from __future__ import annotations

import json
import random
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from drtopo.backup import store as dump_store
from drtopo.database import connect as db
from drtopo.database import pg_tools, reapply
from drtopo.errors import one_line
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput, Clock, Report
from drtopo.tiers import TIERS, DumpKey, dump_key, find_gaps, tiers_for

# What can go wrong while talking to live systems: a failed check (exit 1) with one line, never a traceback.
OPERATIONAL_ERRORS = (
    pg_tools.PgToolError,
    psycopg.Error,
    ClientError,
    BotoCoreError,
    RuntimeError,
    TimeoutError,
)


@dataclass(frozen=True)
class Verified:
    """A verified dump: `corrupt` when it failed its integrity checks (size, SHA-256, every block), so it must never
    be restored."""

    key: str
    corrupt: bool


@dataclass(frozen=True)
class ListedDump:
    """One dump in its tier, as `backup list` shows it."""

    tier: str
    key: str
    bytes: int
    age_seconds: float
    storage_class: str
    state: str
    readable_now: bool


@dataclass(frozen=True)
class Listing:
    """The dumps of a database by tier (oldest first within a tier) and its newest recorded restore test."""

    dumps: list[ListedDump]
    restore_test: dict[str, Any] | None


def run(outputs: StackOutputs, report: Report, clock: Clock, day: date, dry_run: bool) -> list[str]:
    """The dump's keys, one per tier of `day` (a dry run only plans them)."""
    now = datetime.now(UTC)
    taken_at = datetime.combine(day, now.time(), UTC)
    keys = [dump_key(tier, outputs.db_name, taken_at) for tier in tiers_for(day)]
    if dry_run:
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
    sample_rows: int = 0,
) -> Verified:
    s3 = dump_store.s3_client(outputs)
    key = key or dump_store.latest_key(s3, outputs.dump_bucket, outputs.db_name)
    stored = dump_store.head(s3, outputs.dump_bucket, key)
    report.measured.update(key=key, bytes=stored.size, storage_class=stored.storage_class)
    if not stored.readable:
        report.check(
            "readable", False, f"{key} is {stored.state} in {stored.storage_class}; `restore dump` restores it first"
        )
        return Verified(key, corrupt=False)
    with tempfile.TemporaryDirectory(prefix="drtopo-verify-") as tmp:
        path = Path(tmp) / "dump"
        with clock.step("download"):
            digest = dump_store.download(s3, outputs.dump_bucket, key, path)
        if not check_integrity(report, clock, path, stored, digest):
            return Verified(key, corrupt=True)
        if restore_test:
            restore_test_into_scratch(outputs, report, clock, path, stored, scratch_dsn, sample_rows)
    seconds = sum(
        s["seconds"] for s in clock.steps if s["step"] in ("download", "pg_restore --list", "pg_restore read")
    )
    report.measured["verify_mb_per_second"] = round(stored.size / 1e6 / max(seconds, 1e-6), 2)
    return Verified(key, corrupt=False)


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
    sample_rows: int = 0,
) -> None:
    """Restore into a throw-away database, compare its counts with those stored at dump time (and, with
    `sample_rows`, that many rows per table with the source), drop it."""
    expected = stored.row_counts
    name = f"drtopo_verify_{secrets.token_hex(4)}"
    admin_dsn = scratch_dsn or db.conninfo(outputs, dbname="postgres")
    try:
        admin_plain, secret = pg_tools.split_password(admin_dsn)
    except psycopg.ProgrammingError as exc:
        raise BadInput(f"--scratch-dsn is not a libpq connection string ({one_line(exc)})") from None
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
            with psycopg.connect(target, password=secret, autocommit=True) as conn:
                counts = pg_tools.table_counts(conn)
                if sample_rows:
                    with db.connect(outputs) as source:
                        sample_against_source(report, conn, source, sample_rows, stored.metadata.get("taken-at"))
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    report.measured["restored_counts"] = counts
    compare_counts(report, counts, expected)


def sample_against_source(
    report: Report, restored: psycopg.Connection, source: psycopg.Connection, rows: int, taken_at: str | None
) -> None:
    """A random sample of each service table's rows, restored vs the source by key (row hash). A row the source
    changed (`updated_at` after the dump) or deleted since is not a difference; tables without `updated_at` cannot
    tell a later change from damage, so they are checked by count only (said in the check)."""
    for table in reapply.user_tables(restored):
        key = sql.Identifier(_single_key(restored, table))
        ident = sql.Identifier(table)
        has_updated = bool(
            restored.execute(
                "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'updated_at'", (table,)
            ).fetchone()
        )
        if not has_updated or taken_at is None:
            report.skip(f"sample {table}", "no updated_at column (or dump time): counts only", limit=rows)
            continue
        picked = restored.execute(
            sql.SQL("SELECT {k}, hash_record_extended(t, 0) FROM {t} t ORDER BY random() LIMIT %s").format(
                k=key, t=ident
            ),
            (rows,),
        ).fetchall()
        keys = [r[0] for r in picked]
        there = {
            r[0]: (r[1], r[2])
            for r in source.execute(
                sql.SQL(
                    "SELECT {k}, hash_record_extended(t, 0), updated_at > %s FROM {t} t WHERE {k} = ANY(%s)"
                ).format(k=key, t=ident),
                (taken_at, keys),
            ).fetchall()
        }
        differ = [k for k, h in picked if k in there and there[k][0] != h and not there[k][1]]
        changed = sum(1 for k, h in picked if k in there and there[k][0] != h and there[k][1])
        gone = sum(1 for k in keys if k not in there)
        report.check(
            f"sample {table}",
            not differ,
            f"{len(picked) - len(differ) - changed - gone} equal, {changed} changed and {gone} deleted since the "
            f"dump" + (f"; differing without a later change: {differ[:10]}" if differ else ""),
            value=len(differ),
            limit=0,
        )


def _single_key(conn: psycopg.Connection, table: str) -> str:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    ).fetchall()
    if len(rows) != 1:
        raise RuntimeError(f"table {table} has no single-column primary key to sample by")
    return str(rows[0][0])


def compare_counts(report: Report, counts: dict[str, int], expected: dict[str, int] | None) -> None:
    if expected is None:
        report.check("row counts", False, "the dump has no manifest (nor row-counts metadata) to compare with")
        return
    for table in sorted(set(expected) | set(counts)):
        got, want = counts.get(table), expected.get(table)
        report.check(f"rows {table}", got == want, "restored vs source at dump time", value=got, limit=want)


def list_backups(outputs: StackOutputs, report: Report, today: date) -> Listing:
    s3 = dump_store.s3_client(outputs)
    dumps = [d for d in dump_store.list_dumps(s3, outputs.dump_bucket) if d[0].database == outputs.db_name]
    now = datetime.now(UTC)
    listed: list[ListedDump] = []
    for parsed, key, size, storage_class in sorted(dumps, key=lambda d: (TIERS.index(d[0].tier), d[0].taken_at)):
        restore = None
        if storage_class in dump_store.ARCHIVED:  # only archived objects need a HEAD to say whether they can be read
            restore = dump_store.head(s3, outputs.dump_bucket, key, with_manifest=False).restore
        listed.append(
            ListedDump(
                tier=parsed.tier,
                key=key,
                bytes=size,
                age_seconds=(now - parsed.taken_at).total_seconds(),
                storage_class=storage_class,
                state=dump_store.restore_state(storage_class, restore),
                readable_now=dump_store.readable_now(storage_class, restore),
            )
        )
    listing: dict[str, list[dict[str, object]]] = {t: [] for t in TIERS}
    for d in listed:
        listing[d.tier].append(
            {
                "key": d.key,
                "bytes": d.bytes,
                "age_seconds": round(d.age_seconds),
                "storage_class": d.storage_class,
                "readable_now": d.readable_now,
                "state": d.state,
            }
        )
    for tier in TIERS:
        items = listing[tier]
        newest = f", newest {age_text(min(int(i['age_seconds']) for i in items))} old" if items else ""
        report.check(f"tier {tier}", True, f"{len(items)} backups{newest}", value=len(items))
    for gap in find_gaps((d[0] for d in dumps), today):
        report.check(f"gap {gap.tier}", False, gap.detail)
    report.measured["backups"] = listing
    tested = latest_restore_test(s3, outputs.dump_bucket, outputs.db_name)
    report.measured["restore_test"] = tested
    if tested is None:
        report.skip("restore test", "none recorded; `python -m scripts.backup restore-test` (its CronJob) records one")
    else:
        report.check(
            "restore test",
            bool(tested["ok"]),
            f"{tested['at']}: {tested['key']} restored in {tested['seconds']} s, "
            + ("every check passed" if tested["ok"] else "a check failed"),
        )
    return Listing(listed, tested)


def age_text(seconds: float) -> str:
    """An age as the listing shows it: minutes, then hours, then days."""
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"


# ---- restore testing on a schedule -------------------------------------------------------------------------------

# Restore-test records live under the daily tier (`daily/<database>/restore-tests/<time>.json`): the dump job's
# least-privilege role may write there already, and they expire with the daily tier.
RESTORE_TESTS = "restore-tests"


def pick_dump(
    dumps: list[tuple[DumpKey, str, int, str]],
    database: str,
    now: datetime,
    within_days: int,
    rng: random.Random | None = None,
) -> str:
    """The dump a restore test takes (pure): the newest readable one, or with `rng` a random one, among the dumps of
    `database` taken within `within_days` (archived tiers left out: a test must not wait hours for a retrieval)."""
    candidates = sorted(
        (
            d
            for d in dumps
            if d[0].database == database
            and d[3] not in dump_store.ARCHIVED
            and now - d[0].taken_at <= timedelta(days=within_days)
        ),
        key=lambda d: (d[0].taken_at, d[0].tier == "daily", d[1]),
    )
    if not candidates:
        raise BadInput(
            f"no readable dump of {database!r} within {within_days} days; run `python -m scripts.backup run`"
        )
    return (rng.choice(candidates) if rng is not None else candidates[-1])[1]


def restore_test_key(database: str, at: datetime) -> str:
    return f"{restore_tests_prefix(database)}{at.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"


def restore_tests_prefix(database: str) -> str:
    return f"daily/{database}/{RESTORE_TESTS}/"


def restore_test(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    *,
    random_pick: bool,
    within_days: int,
    sample_rows: int,
    scratch_dsn: str | None,
    dry_run: bool,
) -> Verified | None:
    """What the restore-test CronJob runs: a dump (latest or random within the window) restored into a scratch
    database, row counts against its manifest, a sample of rows against the source; the result is recorded in the
    dump bucket (`daily/<database>/restore-tests/<time>.json`), where `backup list` and the policy pack read it.
    Returns the verification (None for a dry run)."""
    s3 = dump_store.s3_client(outputs)
    now = datetime.now(UTC)
    key = pick_dump(
        dump_store.list_dumps(s3, outputs.dump_bucket),
        outputs.db_name,
        now,
        within_days,
        random.Random() if random_pick else None,
    )
    if dry_run:
        report.check("plan", True, f"restore {key} into a scratch database, sample {sample_rows} rows per table")
        return None
    start = time.monotonic()
    verified = verify(outputs, report, clock, key, True, scratch_dsn, sample_rows)
    record = {
        "key": key,
        "database": outputs.db_name,
        "source": f"{outputs.stack}/{outputs.db_instance_id}",
        "at": now.isoformat(timespec="seconds"),
        "ok": report.ok,
        "seconds": round(time.monotonic() - start, 3),
        "sample_rows": sample_rows,
        "checks": [{"name": c.name, "outcome": c.outcome, "detail": c.detail} for c in report.checks],
    }
    s3.put_object(
        Bucket=outputs.dump_bucket,
        Key=restore_test_key(outputs.db_name, now),
        Body=json.dumps(record, indent=1).encode(),
        ContentType="application/json",
        **dump_store.encryption_args(outputs),
    )
    report.measured["restore_test"] = record
    return verified


def latest_restore_test(s3: Any, bucket: str, database: str) -> dict[str, Any] | None:
    """The newest recorded restore test of `database`, or None."""
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=restore_tests_prefix(database))
        for obj in page.get("Contents", [])
    ]
    if not keys:
        return None
    return dict(json.loads(s3.get_object(Bucket=bucket, Key=max(keys))["Body"].read()))
