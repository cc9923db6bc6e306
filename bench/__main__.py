"""python -m bench: the headline figures on one fresh lab, and the machine they were measured on.

Lab up time, promote time (planned and after SIGKILL of the primary), the region-failure drill's RTO/RPO, PITR of a
1M-row database, dump + verify throughput, and the database comparison's rows per second. Each comes from the
dedicated benchmark (bench/bench_*.py) or drill scenario (`python -m scripts.drill --lab-root`, its JSON report read
back) run on the same lab; `--rows` scales the data-heavy ones down for a quick look.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench import bench_backup, bench_compare, bench_promote
from bench.common import run_command
from lab.core import Lab

T = TypeVar("T")


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or "unknown CPU",
    )
    return (
        f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, {platform.platform()}, Python {platform.python_version()}"
    )


def quietly(fn: Callable[..., T], *args: Any) -> tuple[T, str]:
    """Call a benchmark or scenario, keeping its own step-by-step printing for the summary's parsing only."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        result = fn(*args)
    return result, out.getvalue()


def drill(lab: Lab, scenario: str, report: Path) -> tuple[dict[str, Any], str]:
    """One scenario of `python -m scripts.drill` on the running lab at the light load, its output set aside; the
    scenario's entry of the drill's JSON report, and why there is none."""
    (_, code), _ = quietly(
        run_command,
        "scripts.drill",
        ["--scenario", scenario, "--lab-root", str(lab.root), "--load", "light", "--quiet", "--json", str(report)],
    )
    if not report.is_file():
        return {}, f"scripts.drill exited {code} without a report"
    return json.loads(report.read_text())["scenarios"][0], ""


def run(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows for the PITR, dump and comparison figures")
    args = p.parse_args(argv)
    figures: list[tuple[str, str]] = []
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="drtopo-bench-") as tmp:
        Path(tmp).chmod(0o755)
        lab = Lab(Path(tmp) / "lab")
        try:
            seconds = lab.up()
            figures.append(("lab up (warm jar cache)", f"{seconds:.1f} s"))
            print(f"lab up in {seconds:.1f} s", flush=True)
            os.environ.update(lab.env())
            work = Path(tmp) / "work"
            for kill, label in ((False, "planned"), (True, "after SIGKILL of the primary")):
                promoted = bench_promote.promote_once(lab, work / label.replace(" ", "-"), kill, kafka_running=True)
                figures.append((f"promote, {label}: launch to DNS flipped", f"{promoted['launch_to_dns']:.2f} s"))
            region, failed = drill(lab, "region-failure", work / "drill.json")
            m = region.get("measured", {})
            figures.append(
                (
                    "region-failure drill (unplanned)",
                    f"RTO {m.get('rto_seconds')} s, RPO {m.get('rpo_seconds')} s, "
                    f"{m.get('rows_lost')} of {m.get('rows_acknowledged')} acknowledged rows lost"
                    + ("" if region.get("ok") else f" - FAILED {region.get('error') or failed}"),
                )
            )
            print("region-failure drill done", flush=True)
            backup, _ = quietly(bench_backup.run, lab, args.rows, work / "backup")
            figures.append(
                (
                    f"PITR of {backup['rows']} rows ({backup['pitr_wal_mb_of_the_load']} MB of WAL)",
                    f"{backup['pitr_restore_seconds']} s, exact: {backup['pitr_exact']}",
                )
            )
            figures.append(
                (
                    f"dump + verify ({backup['database_mb']} MB database)",
                    f"{backup['dump_plus_verify_db_mb_per_s']} MB/s "
                    f"(dump {backup['backup_run_seconds']} s, verify {backup['verify_seconds']} s)",
                )
            )
            print("backup and PITR done", flush=True)
            lab.restore_baseline()
            _, text = quietly(bench_compare.run, ["--lab-root", str(lab.root), "--rows", str(args.rows), "--runs", "3"])
            for line in text.splitlines():
                if line.startswith(("equal tables", "  busiest", "3 differences")):
                    figures.append(("validate: database comparison", line.strip()))
        finally:
            start = time.monotonic()
            lab.down()
            figures.append(("lab down", f"{time.monotonic() - start:.1f} s"))
    print()
    width = max(len(name) for name, _ in figures)
    for name, value in figures:
        print(f"{name:<{width}}  {value}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
