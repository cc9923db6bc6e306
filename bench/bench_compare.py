"""Benchmark of drtopo.database.compare: rows per second per side for 1M equal rows, and the time to find 3 differences.

`python -m bench.bench_compare [--rows N] [--runs K] [--lab-root DIR]` builds the lab schema with N rows on the lab's
primary (prod), lets them stream to the standby (dr), and compares prod (reference) with dr (target): two servers,
one connection each, queried concurrently. For the differences it pauses WAL replay on dr and changes prod (one
update, one delete, one insert), so dr lags by exactly those rows. Without --lab-root it starts a temporary lab
and stops it afterwards. The goal on a 2-core machine: >= 2.5M rows/s per side (1M rows in under 1 s).

In the same run, on the same two databases, it times what a user would pick instead: reladiff (bench-only
dependency, bench/requirements.txt) comparing every column, with the ratio, and the floor stock PostgreSQL sets
for the same data: one `sum(hash_record(t))` scan per side, both sides at once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from bench.common import a_lab
from drtopo.database.compare import TableDiff, compare
from lab.core import Lab
from lab.service import COLUMNS as SERVICE_COLUMNS

DB = "bench_compare"
SCHEMA = Path(__file__).resolve().parents[1] / "lab" / "schema.sql"
FILL = """
INSERT INTO interface_exceptions (id, transaction_id, interface_type, exception_reason, operation, status,
    severity, retryable, customer_id, retry_count, created_at, updated_at)
SELECT i, 'txn-' || i, (ARRAY['ORDER', 'COLLECTION', 'DISTRIBUTION'])[1 + i %% 3], 'reason ' || i %% 97, 'CREATE',
       (ARRAY['NEW', 'ACKNOWLEDGED', 'RESOLVED', 'CLOSED'])[1 + i %% 4], 'MEDIUM', i %% 2 = 0, 'cust-' || i %% 1000,
       i %% 5, timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
FROM generate_series(1, %(rows)s) i
"""


def wait_replayed(prod: psycopg.Connection, dr: psycopg.Connection, timeout: float = 300) -> None:
    (target,) = prod.execute("SELECT pg_current_wal_lsn()").fetchone()
    deadline = time.monotonic() + timeout
    while not dr.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"dr did not replay up to {target} within {timeout:.0f} s")
        time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a local PostgreSQL backend of the lab, with that of the processes its postmaster
    reaped meanwhile (the backend's parallel workers): take the difference over a run."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    parent = Path(f"/proc/{fields[1]}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + int(parent[13]) + int(parent[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def timed_compare(lab: Lab, db: str = DB) -> tuple[float, list[float], TableDiff]:
    """Wall seconds, CPU seconds of each side's backend (and its parallel workers), and the result of comparing
    the exceptions table."""
    with (
        psycopg.connect(lab.prod.postgres.conninfo(db), autocommit=True) as ref,
        psycopg.connect(lab.dr.postgres.conninfo(db), autocommit=True) as tgt,
    ):
        pids = [ref.info.backend_pid, tgt.info.backend_pid]
        cpu = [cpu_seconds(pid) for pid in pids]
        start = time.perf_counter()
        (diff,) = compare(ref, tgt, ["interface_exceptions"])
        wall = time.perf_counter() - start
        return wall, [cpu_seconds(pid) - c for pid, c in zip(pids, cpu, strict=True)], diff


def floor_seconds(lab: Lab, db: str = DB) -> float:
    """Wall seconds of one `sum(hash_record(t))` scan on each side, both at once: what any comparison must read."""
    query = "SELECT sum(hash_record(t)::bigint) FROM interface_exceptions t"
    sums: dict[str, Any] = {}

    def scan(stack: str) -> None:
        with psycopg.connect(lab.region(stack).postgres.conninfo(db), autocommit=True) as conn:
            sums[stack] = conn.execute(query).fetchone()[0]

    threads = [threading.Thread(target=scan, args=(s,)) for s in ("prod", "dr")]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def reladiff_available() -> bool:
    try:
        import reladiff  # noqa: F401
    except ImportError:
        return False
    return True


def reladiff_seconds(lab: Lab, password: str, db: str = DB) -> tuple[float, int]:
    """Wall seconds and differences found by reladiff's hashdiff over both servers, every column compared."""
    import reladiff

    columns = [c for c in SERVICE_COLUMNS if c != "id"]  # every column but the key

    def uri(stack: str) -> str:
        port = lab.region(stack).postgres.conninfo(db).split("port=")[1].split()[0]
        return f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:{port}/{db}"

    start = time.perf_counter()
    ref = reladiff.connect_to_table(uri("prod"), "interface_exceptions", "id", extra_columns=tuple(columns))
    tgt = reladiff.connect_to_table(uri("dr"), "interface_exceptions", "id", extra_columns=tuple(columns))
    found = sum(1 for _ in reladiff.diff_tables(ref, tgt, algorithm=reladiff.Algorithm.HASHDIFF))
    seconds = time.perf_counter() - start
    for segment in (ref, tgt):
        segment.database.close()
    return seconds, found


def side_by_side(lab: Lab, password: str, drtopo_seconds: float, what: str) -> dict[str, float]:
    """reladiff and the floor on the same data as drtopo's `drtopo_seconds`; prints the ratios."""
    floor = floor_seconds(lab)
    figures = {"drtopo_seconds": drtopo_seconds, "floor_seconds": floor}
    line = f"  {what}: drtopo {drtopo_seconds:.3f} s"
    if reladiff_available():
        rd, found = reladiff_seconds(lab, password)
        figures["reladiff_seconds"] = rd
        line += f", reladiff {rd:.3f} s ({found} differences; drtopo {rd / drtopo_seconds:.1f}x faster)"
    else:
        line += ", reladiff SKIPPED (not installed: pip install -r bench/requirements.txt)"
    line += f", stock floor sum(hash_record(t)) {floor:.3f} s (drtopo at {drtopo_seconds / floor:.2f}x the floor)"
    print(line, flush=True)
    return figures


def run(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_compare", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--lab-root", type=Path, help="a running lab to use instead of a temporary one")
    args = p.parse_args(argv)
    with a_lab(args.lab_root) as lab:
        env = lab.env()
        os.environ["PGPASSWORD"] = env["PGPASSWORD"]
        with (
            psycopg.connect(lab.prod.postgres.conninfo("postgres"), autocommit=True) as admin,
            psycopg.connect(lab.dr.postgres.conninfo("postgres"), autocommit=True) as dr_admin,
        ):
            admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {DB}")
            wait_replayed(admin, dr_admin)
        try:
            with (
                psycopg.connect(lab.prod.postgres.conninfo(DB), autocommit=True) as prod,
                psycopg.connect(lab.dr.postgres.conninfo(DB), autocommit=True) as dr,
            ):
                start = time.perf_counter()
                prod.execute(SCHEMA.read_text())
                prod.execute(FILL, {"rows": args.rows})
                prod.execute("VACUUM ANALYZE interface_exceptions")
                wait_replayed(prod, dr)
                print(f"built {args.rows} rows on prod, replayed on dr, in {time.perf_counter() - start:.1f} s")
                timed_compare(lab)  # warm both servers' caches
                times, cpus = [], []
                for _ in range(args.runs):
                    seconds, cpu, diff = timed_compare(lab)
                    assert diff.equal, diff.summary()
                    times.append(seconds)
                    cpus.append(max(cpu))
                best, median, cpu_best = min(times), statistics.median(times), min(cpus)
                print(
                    f"equal tables, {args.rows} rows per side, {args.runs} runs: wall best {best:.3f} s = "
                    f"{args.rows / best / 1e6:.2f}M rows/s per side, median {median:.3f} s = "
                    f"{args.rows / median / 1e6:.2f}M rows/s per side"
                )
                print(
                    f"  busiest side's CPU (backend and parallel workers) {cpu_best:.3f} s = "
                    f"{args.rows / cpu_best / 1e6:.2f}M rows per CPU-second (the rate on otherwise idle cores)"
                )
                side_by_side(lab, env["PGPASSWORD"], median, "side by side, equal tables")
                dr.execute("SELECT pg_wal_replay_pause()")
                try:
                    mid = args.rows // 2
                    prod.execute("UPDATE interface_exceptions SET status = 'ESCALATED' WHERE id = %s", (mid,))
                    prod.execute("DELETE FROM interface_exceptions WHERE id = %s", (mid // 3,))
                    prod.execute(
                        "INSERT INTO interface_exceptions (id, transaction_id, interface_type, exception_reason, "
                        "operation) VALUES (%s, 'txn-new', 'ORDER', 'new', 'CREATE')",
                        (args.rows + 1,),
                    )
                    seconds, cpu, diff = timed_compare(lab)
                    print(
                        f"3 differences found in {seconds:.3f} s (busiest side's CPU {max(cpu):.3f} s): "
                        f"{diff.summary()}"
                    )
                    side_by_side(lab, env["PGPASSWORD"], seconds, "side by side, 3 differences")
                finally:
                    dr.execute("SELECT pg_wal_replay_resume()")
        finally:
            with psycopg.connect(lab.prod.postgres.conninfo("postgres"), autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(run())
