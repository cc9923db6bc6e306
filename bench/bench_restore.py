"""Benchmark of the restores: dump restore and re-apply throughput (rows/s) and PITR time per GB of WAL.

`python -m bench.bench_restore [--rows N] [--after-t M] [--lab-root DIR]` fills the lab's primary (prod) with N rows,
then times `backup run` + `restore dump` into an empty database (restore rows/s), a PITR from the WAL bucket alone
(`--wal-source bucket`: the copy of the fill's WAL, the base backup's download, the replay), and a corruption recovery:
T, a damaging DELETE of a third of the rows, M rows written after T, then `restore pitr --time T --cutover
--damage-xid X`, which replays the WAL of the fill from the archive (PITR seconds per GB of WAL), re-applies the M
rows (re-apply rows/s; the comparison that finds them is timed apart) and swaps the restored instance in. The lab's
PostgreSQL pair is rebuilt afterwards. Without --lab-root it starts a temporary lab and stops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from psycopg import sql

from bench.bench_backup import FILL, timed, timed_pitr
from bench.common import a_lab
from drtopo.database.connect import connect
from drtopo.database.pitr.wal_names import segment_distance, segment_name, segment_of
from drtopo.outputs import StackOutputs, load_outputs
from lab.core import Lab


def restore_dump(lab: Lab, stack: list[str], work: Path) -> dict[str, Any]:
    _, dumped = timed("backup", ["run", *stack], work / "run.json")
    key = dumped["measured"]["keys"][0]
    name = f"bench_restore_{uuid.uuid4().hex[:8]}"
    with connect(lab_outputs(lab), dbname="postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            target = lab.prod.postgres.conninfo(dbname=name)
            seconds, restored = timed("restore", ["dump", key, "--target", target, *stack], work / "dump.json")
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    pg_restore = next(s["seconds"] for s in restored["measured"]["steps"] if s["step"] == "pg_restore")
    rows = sum(int(c["value"]) for c in restored["checks"] if c["name"].startswith("rows "))
    return {
        "restore_dump_rows": rows,
        "dump_mb": round(dumped["measured"]["bytes"] / 1e6, 1),
        "restore_dump_seconds_cli": round(seconds, 2),
        "restore_dump_pg_restore_seconds": pg_restore,
        "restore_dump_rows_per_second": round(rows / max(pg_restore, 1e-6)),
    }


def lab_outputs(lab: Lab) -> StackOutputs:
    return load_outputs(lab.prod.outputs_path, "prod")


def corruption_recovery(lab: Lab, stack: list[str], work: Path, wal_bytes: float, after_t: int) -> dict[str, Any]:
    outputs = lab_outputs(lab)
    with connect(outputs, autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        xid = conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
        damaged = conn.execute("DELETE FROM interface_exceptions WHERE id % 3 = 0").rowcount
        conn.commit()
    with connect(outputs) as conn:
        conn.execute(FILL.replace("'bench-'", "'after-t-'"), {"rows": after_t})
    args = ["pitr", "--time", target.isoformat(), "--cutover", "--damage-xid", xid, *stack]
    seconds, report = timed("restore", args, work / "cutover.json")
    m = report["measured"]
    passes = m["passes"]
    copy_seconds = sum(p["seconds"] - p["compare_seconds"] for p in passes)
    compare_seconds = sum(p["compare_seconds"] for p in passes)
    replay = next(s["seconds"] for s in report["measured"]["steps"] if s["step"] == "replay WAL to T and promote")
    return {
        "rows_damaged": damaged,
        "rows_written_after_t": after_t,
        "rows_reapplied": m["rows_reapplied"],
        "cutover_seconds_cli": round(seconds, 2),
        "pitr_restore_seconds": m["restore_seconds"],
        "pitr_replay_seconds": replay,
        "pitr_wal_gb": round(wal_bytes / 1e9, 3),
        "pitr_seconds_per_gb_of_wal": round(m["restore_seconds"] / (wal_bytes / 1e9), 1),
        "reapply_compare_seconds": round(compare_seconds, 2),
        "reapply_copy_seconds": round(copy_seconds, 2),
        "reapply_rows_per_second": round(m["rows_reapplied"] / max(copy_seconds, 1e-6)),
        "reapply_rows_per_second_with_compare": round(m["rows_reapplied"] / max(copy_seconds + compare_seconds, 1e-6)),
        "reapply_complete": m["rows_reapplied"] == after_t and report["ok"],
    }


def pitr_from_bucket(lab: Lab, stack: list[str], work: Path, wal_bytes: float) -> dict[str, Any]:
    """`restore pitr --wal-source bucket` to now: the fill's WAL and the base backup come from the WAL bucket."""
    outputs = lab_outputs(lab)
    with connect(outputs) as conn:
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    args = ["--time", target.isoformat(), "--wal-source", "bucket", *stack]
    seconds, report, _ = timed_pitr(args, outputs, work / "bucket.json")
    m = report["measured"]
    steps = {s["step"]: s["seconds"] for s in m["steps"]}
    fetch = next(v for k, v in steps.items() if k.startswith("fetch the archive of"))
    base = next(v for k, v in steps.items() if k.startswith("fetch base backup"))
    replay = steps["replay WAL to T and promote"]
    return {
        "bucket_pitr_seconds_cli": round(seconds, 2),
        "bucket_pitr_fetch_wal_seconds": fetch,
        "bucket_pitr_fetch_base_seconds": base,
        "bucket_pitr_replay_seconds": replay,
        "bucket_pitr_seconds_per_gb_of_wal": round(m["restore_seconds"] / (wal_bytes / 1e9), 1),
    }


BACKLOG_TIMEOUT_S = 300.0


def archive_backlog(conn: Any) -> dict[str, Any]:
    """Right after a load: the finished segments the archiver has not yet stored in the bucket (the lab's archive
    command succeeds only once the bucket holds the file), then the seconds until they all are (bounded)."""
    sql_now = (
        "SELECT pg_walfile_name(pg_current_wal_lsn()), last_archived_wal, "
        "(SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') FROM pg_stat_archiver"
    )
    current, archived, size = conn.execute(sql_now).fetchone()
    distance = segment_distance(archived, current, size)
    backlog = max(int(distance) - 1, 0) if distance != "?" else None  # the current segment is not finished yet
    start = time.monotonic()
    while time.monotonic() - start < BACKLOG_TIMEOUT_S:
        (archived,) = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
        if archived is not None and archived[:24] >= previous_segment(current, size):
            break
        time.sleep(0.05)
    return {
        "archive_backlog_segments_after_fill": backlog,
        "archive_backlog_drain_seconds": round(time.monotonic() - start, 2),
    }


def previous_segment(segment: str, size: int) -> str:
    """The segment before `segment` (the last finished one while `segment` is being written) (pure)."""
    timeline, number = segment_of(segment, size)
    return segment_name(timeline, number - 1, size)


def run(lab: Lab, rows: int, after_t: int, work: Path) -> dict[str, Any]:
    os.environ.update(lab.env())
    stack = ["--stack", "prod", "--outputs", str(lab.prod.outputs_path)]
    with connect(lab_outputs(lab)) as conn:
        (lsn,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        start = time.monotonic()
        conn.execute(FILL, {"rows": rows})
        fill_seconds = time.monotonic() - start
        wal_bytes = float(conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (lsn,)).fetchone()[0])
        backlog = archive_backlog(conn)
    try:
        figures: dict[str, Any] = {"rows": rows, "fill_seconds": round(fill_seconds, 2), **backlog}
        figures.update(restore_dump(lab, stack, work))
        figures.update(pitr_from_bucket(lab, stack, work, wal_bytes))
        figures.update(corruption_recovery(lab, stack, work, wal_bytes, after_t))
        figures["bucket_vs_archive_pitr_ratio"] = round(
            figures["bucket_pitr_seconds_per_gb_of_wal"] / figures["pitr_seconds_per_gb_of_wal"], 2
        )
    finally:
        lab.reset_postgres()  # the cutover left prod on a new timeline with its standby behind
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_restore", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--after-t", type=int, default=100_000, help="rows written after T, to be re-applied")
    p.add_argument("--lab-root", type=Path, help="use this running lab (default: start a temporary one)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    with a_lab(args.lab_root) as lab, tempfile.TemporaryDirectory(prefix="drtopo-bench-restore-") as work:
        figures = run(lab, args.rows, args.after_t, Path(work))
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["reapply_complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
