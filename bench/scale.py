"""Growth curves: how each recovery cost grows with the database, per size, with a fitted cost per million rows.

`python -m bench.scale --sizes 1M,4M,16M [--lab-root DIR] [--json FILE] [--png FILE]` measures, for each size on a
fresh lab pair (prod primary, dr streaming standby, a base backup taken while the database is empty):
  fill                  the rows by generate_series on prod, replayed by dr
  dump + verify         `scripts.backup run` then `backup verify` (download, SHA-256, every block read)
  restore               `backup verify --restore-test`: the dump restored into a scratch database, counts compared
  PITR                  `scripts.restore pitr` to just after the fill: the base backup predates it, so every WAL
                        segment of the fill is replayed from the archive (also given as seconds per GB of WAL)
  compare               drtopo.database.compare of prod and dr (equal), reladiff on the same two databases (every
                        column), and the stock floor: one sum(hash_record(t)) scan per side
  promote               SIGKILL prod, `scripts.promote --stack dr` (to the DNS flip, and in all)
  failback rebuild      prod rebuilt as dr's standby after 1% of the rows changed on dr: by pg_rewind, then again by
                        a full base backup (drtopo.database.standby.rebuild_postgres)
It prints a table, writes JSON and a PNG (time against size, with each operation's fitted seconds per million rows)
and says the disk a size needs before it starts. The lab is its own (default `.lab-scale` in the repository), started
and stopped by the run unless --lab-root names a running one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench import bench_compare
from bench.bench_backup import timed, timed_pitr
from drtopo.database.connect import connect
from drtopo.database.self_managed import rebuild_postgres
from drtopo.outputs import load_outputs
from lab.core import REPO_DIR, Lab

# The lab schema's rows as the service writes them (about 250 bytes a row with its four indexes).
FILL = """
INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation, status, severity,
    retryable, customer_id, retry_count, created_at, updated_at)
SELECT 'scale-' || i, (ARRAY['ORDER', 'COLLECTION', 'DISTRIBUTION'])[1 + i %% 3], 'reason ' || i %% 97, 'CREATE',
       (ARRAY['NEW', 'ACKNOWLEDGED', 'RESOLVED', 'CLOSED'])[1 + i %% 4], 'MEDIUM', i %% 2 = 0, 'cust-' || i %% 1000,
       i %% 5, timestamptz '2026-01-01 00:00:00+00' + i * interval '10 ms',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '10 ms'
FROM generate_series(%(first)s, %(first)s + %(rows)s - 1) i
"""
# Per row, measured on the lab: the database (~250 B), and what one size keeps on disk at once: both servers, the
# WAL archive of the fill, the dump, a scratch restore and a PITR instance (about 6 copies of the database).
BYTES_PER_ROW = 260
COPIES_ON_DISK = 6
OPERATIONS = (
    "fill",
    "dump + verify",
    "restore",
    "pitr",
    "compare (drtopo)",
    "compare (reladiff)",
    "compare floor",
    "promote to DNS",
    "promote",
    "failback pg_rewind",
    "failback base backup",
)


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        scale = {"K": 1_000, "M": 1_000_000}.get(item[-1].upper(), 1)
        number = item[:-1] if scale > 1 else item
        try:
            value = int(float(number) * scale)
        except ValueError:
            value = 0
        if value <= 0:
            raise SystemExit(f"--sizes item {item!r} is invalid; expected row counts like 200K,1M,4M")
        sizes.append(value)
    if not sizes:
        raise SystemExit("--sizes is empty; expected row counts like 1M,4M,16M")
    return sizes


def label(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows / 1e3:g}K"


def disk_needed_gb(rows: int) -> float:
    return rows * BYTES_PER_ROW * COPIES_ON_DISK / 1e9


def wait_replayed(lab: Lab, timeout: float = 900) -> None:
    with (
        psycopg.connect(lab.prod.postgres.conninfo(), password=lab.password, autocommit=True) as prod,
        psycopg.connect(lab.dr.postgres.conninfo(), password=lab.password, autocommit=True) as dr,
    ):
        (lsn,) = prod.execute("SELECT pg_current_wal_lsn()").fetchone()
        deadline = time.monotonic() + timeout
        while not dr.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dr did not replay up to {lsn} within {timeout:.0f} s")
            time.sleep(0.1)


def one_size(lab: Lab, rows: int, work: Path) -> dict[str, Any]:
    """Every operation on a database of `rows` rows; seconds per operation and the sizes involved (the scripts'
    own output goes to `scripts.log` in the work folder)."""
    with (work / "scripts.log").open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return _one_size(lab, rows, work)


def say(text: str) -> None:
    print(text, file=sys.__stdout__, flush=True)


def _one_size(lab: Lab, rows: int, work: Path) -> dict[str, Any]:
    lab.reset_postgres()
    os.environ.update(lab.env())
    prod_out = load_outputs(lab.prod.outputs_path, "prod")
    stack = ["--stack", "prod", "--outputs", str(lab.prod.outputs_path)]
    t: dict[str, float] = {}
    with connect(prod_out) as conn:
        (lsn,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        start = time.monotonic()
        conn.execute(FILL, {"rows": rows, "first": 1})
        conn.execute("VACUUM ANALYZE interface_exceptions")
        db_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        wal_bytes = float(conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (lsn,)).fetchone()[0])
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    wait_replayed(lab)
    t["fill"] = time.monotonic() - start
    say(f"  {label(rows)}: filled {rows} rows ({db_bytes / 1e6:.0f} MB) in {t['fill']:.1f} s")

    dump_s, dumped = timed("backup", ["run", *stack], work / "run.json")
    key, dump_bytes = dumped["measured"]["keys"][0], dumped["measured"]["bytes"]
    verify_s, _ = timed("backup", ["verify", key, *stack], work / "verify.json")
    t["dump + verify"] = dump_s + verify_s
    t["restore"], restored = timed("backup", ["verify", key, "--restore-test", *stack], work / "restore.json")
    say(f"  {label(rows)}: dump + verify {t['dump + verify']:.1f} s, restore {t['restore']:.1f} s")

    pitr_s, _, pitr_rows = timed_pitr(["--time", target.isoformat(), *stack], prod_out, work / "pitr.json")
    t["pitr"] = pitr_s
    say(f"  {label(rows)}: PITR over {wal_bytes / 1e9:.2f} GB of WAL in {pitr_s:.1f} s")

    db = prod_out.db_name
    t["compare (drtopo)"] = min(bench_compare.timed_compare(lab, db)[0] for _ in range(2))
    _, _, diff = bench_compare.timed_compare(lab, db)
    t["compare floor"] = bench_compare.floor_seconds(lab, db)
    reladiff_found = None
    if bench_compare.reladiff_available():
        t["compare (reladiff)"], reladiff_found = bench_compare.reladiff_seconds(lab, lab.password, db)
    say(
        f"  {label(rows)}: compare drtopo {t['compare (drtopo)']:.2f} s, reladiff "
        f"{t.get('compare (reladiff)', float('nan')):.2f} s, floor {t['compare floor']:.2f} s"
    )

    lab.prod.postgres.kill()
    t["promote"], promoted = timed(
        "promote", ["--stack", "dr", "--outputs", str(lab.dr.outputs_path)], work / "promote.json"
    )
    t["promote to DNS"] = promoted["measured"]["seconds_to_dns_flipped"]

    prod_out, dr_out = load_outputs(lab.prod.outputs_path, "prod"), load_outputs(lab.dr.outputs_path, "dr")
    changed = max(rows // 100, 1)
    with connect(dr_out) as conn:
        conn.execute(FILL, {"rows": changed, "first": rows + 1})
        conn.execute("UPDATE interface_exceptions SET status = 'RESOLVED' WHERE id % 100 = 7")
    methods = {}
    for name, full in (("failback pg_rewind", False), ("failback base backup", True)):
        start = time.monotonic()
        methods[name] = rebuild_postgres(prod_out, dr_out, base_backup=full)["postgres"]
        t[name] = time.monotonic() - start
    say(
        f"  {label(rows)}: promote {t['promote']:.1f} s, rebuild by pg_rewind {t['failback pg_rewind']:.1f} s, "
        f"by base backup {t['failback base backup']:.1f} s"
    )
    return {
        "rows": rows,
        "database_bytes": db_bytes,
        "wal_bytes_of_the_fill": wal_bytes,
        "dump_bytes": dump_bytes,
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "pitr_seconds_per_gb_of_wal": round(t["pitr"] / (wal_bytes / 1e9), 2) if wal_bytes else None,
        "pitr_exact": pitr_rows == rows,
        "restore_checks_ok": restored["ok"],
        "compare_equal": diff.equal,
        "reladiff_differences": reladiff_found,
        "rebuild_methods": methods,
        "load_average": round(os.getloadavg()[0], 2),  # the machine is shared: figures move with it
    }


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line through (million rows, seconds): (seconds per million rows, fixed seconds)."""
    if len(points) == 1:
        x, y = points[0]
        return (y / x if x else 0.0), 0.0
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return slope, my - slope * mx


def fits(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for op in OPERATIONS:
        points = [(r["rows"] / 1e6, r["seconds"][op]) for r in results if op in r["seconds"]]
        if points:
            slope, fixed = fit(points)
            out[op] = {"seconds_per_million_rows": round(slope, 3), "fixed_seconds": round(fixed, 3)}
    return out


def print_table(results: list[dict[str, Any]], fitted: dict[str, dict[str, float]]) -> None:
    sizes = [label(r["rows"]) for r in results]
    head = f"{'operation (seconds)':<22}" + "".join(f"{s:>10}" for s in sizes) + f"{'s per 1M rows':>15}{'fixed s':>9}"
    print(head)
    print("-" * len(head))
    for op in OPERATIONS:
        if op not in fitted:
            continue
        cells = "".join(f"{r['seconds'].get(op, float('nan')):>10.2f}" for r in results)
        f = fitted[op]
        print(f"{op:<22}{cells}{f['seconds_per_million_rows']:>15.3f}{f['fixed_seconds']:>9.2f}")
    print("-" * len(head))
    print(f"{'database MB':<22}" + "".join(f"{r['database_bytes'] / 1e6:>10.0f}" for r in results))
    print(f"{'WAL of the fill MB':<22}" + "".join(f"{r['wal_bytes_of_the_fill'] / 1e6:>10.0f}" for r in results))
    print(f"{'PITR s per GB of WAL':<22}" + "".join(f"{r['pitr_seconds_per_gb_of_wal']:>10.2f}" for r in results))
    ratio = [
        r["seconds"]["compare (reladiff)"] / r["seconds"]["compare (drtopo)"]
        if "compare (reladiff)" in r["seconds"]
        else None
        for r in results
    ]
    print(f"{'reladiff / drtopo':<22}" + "".join(f"{x:>9.1f}x" if x else f"{'-':>10}" for x in ratio))
    floor = [r["seconds"]["compare (drtopo)"] / r["seconds"]["compare floor"] for r in results]
    print(f"{'drtopo / floor':<22}" + "".join(f"{x:>9.2f}x" for x in floor))
    print(f"{'load average':<22}" + "".join(f"{r.get('load_average', 0):>10.1f}" for r in results))


def write_png(results: list[dict[str, Any]], fitted: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 6.5))
    xs = [r["rows"] / 1e6 for r in results]
    colors = plt.get_cmap("tab20").colors
    for i, op in enumerate(OPERATIONS):
        if op not in fitted:
            continue
        ys = [r["seconds"].get(op) for r in results]
        f = fitted[op]
        ax.plot(
            xs,
            ys,
            marker="osD^v<>ph*X"[i % 11],
            color=colors[(2 * i) % 20 if i < 10 else 1],
            label=f"{op}: {f['seconds_per_million_rows']:.2f} s per 1M rows ({f['fixed_seconds']:+.1f} s fixed)",
        )
    ax.set_xlabel("rows in the database (millions)")
    ax.set_ylabel("seconds")
    cores, memory = os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    loads = ", ".join(f"{label(r['rows'])} {r.get('load_average', 0):.1f}" for r in results)
    ax.set_title(
        f"drtopo: recovery cost against database size ({cores} cores, {memory:.0f} GiB; "
        f"load average per size: {loads})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1M,4M,16M", help="row counts, e.g. 200K,1M,4M (default 1M,4M,16M)")
    p.add_argument("--lab-root", type=Path, help="a running lab to use (default: start one in .lab-scale, stop it)")
    p.add_argument("--json", type=Path, default=REPO_DIR / ".lab-scale" / "scale.json")
    p.add_argument("--png", type=Path, help="the picture (default: beside --json)")
    args = p.parse_args(argv)
    sizes = parse_sizes(args.sizes)
    free = shutil.disk_usage(REPO_DIR).free / 1e9
    for rows in sizes:
        print(f"size {label(rows)}: about {disk_needed_gb(rows):.1f} GB of disk at once ({free:.0f} GB free)")
    if disk_needed_gb(max(sizes)) > free:
        print(f"not enough disk for {label(max(sizes))}: {disk_needed_gb(max(sizes)):.1f} GB needed", file=sys.stderr)
        return 2
    own = args.lab_root is None
    lab = Lab(REPO_DIR / ".lab-scale" / "lab") if own else Lab(args.lab_root)
    results = []
    saved = dict(os.environ)
    try:
        if own:
            (REPO_DIR / ".lab-scale").mkdir(exist_ok=True)
            (REPO_DIR / ".lab-scale").chmod(0o711)
            print(f"lab up in {lab.up():.1f} s", flush=True)
        os.environ.update(lab.env())
        for rows in sizes:
            # Kept after the run (the scripts' log, their JSON reports); the next run of the size replaces it.
            work = REPO_DIR / ".lab-scale" / "work" / label(rows)
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            start = time.monotonic()
            results.append(one_size(lab, rows, work))
            print(f"size {label(rows)} done in {time.monotonic() - start:.0f} s (log: {work / 'scripts.log'})")
    finally:
        try:
            lab.reset_postgres()
        finally:
            os.environ.clear()
            os.environ.update(saved)
            if own:
                lab.down()
    fitted = fits(results)
    print()
    print_table(results, fitted)
    png = args.png or args.json.with_suffix(".png")
    document = {"sizes": results, "fits": fitted, "machine": {"cpus": os.cpu_count()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    write_png(results, fitted, png)
    print(f"json: {args.json}  png: {png}")
    ok = all(r["pitr_exact"] and r["restore_checks_ok"] and r["compare_equal"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run())
