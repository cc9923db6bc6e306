"""Benchmark of scripts.backup and scripts.restore pitr: dump + verify throughput (MB/s) and PITR restore time for a
database of 1M exceptions.

`python -m bench.bench_backup [--rows N] [--lab-root DIR]` fills the lab's primary (prod) with N rows by
generate_series, then times `backup run` (pg_dump in an exported snapshot, SHA-256, SSE-KMS upload to the emulator),
`backup verify --restore-test` (download, SHA-256, read every block, restore into a scratch database, compare counts)
and `restore pitr` to a time just after the load: the base backup predates the load, so recovery replays every WAL
segment the load wrote from the archive. Without --lab-root it starts a temporary lab and stops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.common import a_lab, run_command
from drtopo.database.connect import connect, password
from drtopo.database.pitr.recovery import stop_instance
from drtopo.outputs import StackOutputs, load_outputs
from lab.core import Lab

FILL = """
INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation, status, severity,
    retryable, customer_id, retry_count)
SELECT 'bench-' || i, (ARRAY['ORDER', 'COLLECTION', 'DISTRIBUTION'])[1 + i %% 3], 'reason ' || i %% 97, 'CREATE',
       (ARRAY['NEW', 'ACKNOWLEDGED', 'RESOLVED', 'CLOSED'])[1 + i %% 4], 'MEDIUM', i %% 2 = 0, 'cust-' || i %% 1000,
       i %% 5
FROM generate_series(1, %(rows)s) i
"""


def timed(command: str, args: list[str], report: Path) -> tuple[float, dict[str, Any]]:
    """`python -m scripts.<command> <args> --json <report>`, timed as an operator sees it: seconds, report."""
    seconds, code = run_command(f"scripts.{command}", [*args, "--json", str(report)])
    if code != 0:
        verb = "" if args[0].startswith("-") else f" {args[0]}"
        raise SystemExit(f"scripts.{command}{verb} exited {code}; see {report}")
    return seconds, json.loads(report.read_text())


def timed_pitr(args: list[str], outputs: StackOutputs, report: Path) -> tuple[float, dict[str, Any], int]:
    """`restore pitr` with `args`, timed; the rows the restored instance holds; the instance stopped and removed."""
    seconds, pitr = timed("restore", ["pitr", *args], report)
    data_dir = Path(pitr["measured"]["data_dir"])
    try:
        with psycopg.connect(pitr["measured"]["conninfo"], password=password(outputs)) as conn:
            rows = int(conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()[0])
    finally:
        assert outputs.self_managed is not None
        stop_instance(outputs.self_managed, data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    return seconds, pitr, rows


def run(lab: Lab, rows: int, work: Path) -> dict[str, Any]:
    os.environ.update(lab.env())
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    stack = ["--stack", "prod", "--outputs", str(lab.prod.outputs_path)]
    with connect(outputs) as conn:
        (lsn,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        start = time.monotonic()
        conn.execute(FILL, {"rows": rows})
        fill_seconds = time.monotonic() - start
        db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        wal_bytes = float(conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (lsn,)).fetchone()[0])
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        total = conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()[0]

    dump_s, dumped = timed("backup", ["run", *stack], work / "run.json")
    key, dump_bytes = dumped["measured"]["keys"][0], dumped["measured"]["bytes"]
    verify_s, verified = timed("backup", ["verify", key, *stack], work / "verify.json")
    test_s, _ = timed("backup", ["verify", key, "--restore-test", *stack], work / "restore-test.json")

    pitr_s, pitr, restored_rows = timed_pitr(["--time", target.isoformat(), *stack], outputs, work / "pitr.json")
    return {
        "rows": rows,
        "fill_seconds": round(fill_seconds, 2),
        "database_mb": round(db_bytes / 1e6, 1),
        "dump_mb": round(dump_bytes / 1e6, 1),
        "backup_run_seconds": round(dump_s, 2),
        "pg_dump_seconds": dumped["measured"]["dump_seconds"],
        "backup_run_db_mb_per_s": round(db_bytes / 1e6 / dump_s, 1),
        "backup_run_dump_mb_per_s": round(dump_bytes / 1e6 / dump_s, 1),
        "verify_seconds": round(verify_s, 2),
        "verify_dump_mb_per_s": round(dump_bytes / 1e6 / verify_s, 1),
        "verify_restore_test_seconds": round(test_s, 2),
        "dump_plus_verify_db_mb_per_s": round(db_bytes / 1e6 / (dump_s + verify_s), 1),
        "pitr_wal_mb_of_the_load": round(wal_bytes / 1e6, 1),
        "pitr_seconds_cli": round(pitr_s, 2),
        "pitr_restore_seconds": pitr["measured"]["restore_seconds"],
        "pitr_rows_expected": total,
        "pitr_rows_restored": restored_rows,
        "pitr_exact": restored_rows == total,
        "verify_checks_ok": verified["ok"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_backup", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--lab-root", type=Path, help="use this running lab (default: start a temporary one)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    with a_lab(args.lab_root) as lab, tempfile.TemporaryDirectory(prefix="drtopo-bench-backup-") as work:
        figures = run(lab, args.rows, Path(work))
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["pitr_exact"] and figures["verify_checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
