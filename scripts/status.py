"""python -m scripts.status: are we ready right now? The pair's readiness items and the RTO/RPO if it failed now.

Reads the pair only and changes nothing of it. Each item has its measured value, its limit (from the objectives or
settings) and PASS / FAIL / SKIP (a skip says why and is never a pass): replica lag, the newest dump and its restore
test, the WAL archive's chain and age, MirrorMaker's lag and checkpoint age, the stacks' roles and the role marker,
the last drill. `--html FILE` writes a static page of the same with charts of the drills' RTO and RPO; `--publish`
puts the JSON into the configuration bucket and a metric per item into CloudWatch (what the scheduled check does).
Exit 0 when every item passes, 1 when one is at risk, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from drtopo.context import Context
from drtopo.outputs import load_outputs, peer_outputs
from drtopo.readiness.gather import Readiness, gather
from drtopo.readiness.page import render
from drtopo.readiness.publish import publish
from drtopo.report import settings_for
from scripts.cli import main_guard, new_report, parser


def build_parser() -> argparse.ArgumentParser:
    p = parser("status", __doc__.splitlines()[0], changes_state=False)
    p.add_argument("--html", type=Path, metavar="FILE", help="write the readiness page (static HTML) here")
    p.add_argument(
        "--publish",
        action="store_true",
        help="also put the JSON into the configuration bucket and a CloudWatch metric per item (the scheduled check)",
    )
    return p


def estimate_lines(readiness: Readiness) -> list[str]:
    lines = []
    for name, fig in (("RTO", readiness.estimate.rto), ("RPO", readiness.estimate.rpo)):
        total = "unknown" if fig.seconds is None else f"{fig.seconds:g} s"
        lines.append(
            f"estimated {name} if the primary region failed now: {total} (objective {fig.objective_seconds:g} s)"
        )
        lines.extend(
            f"  {p.name}: {'-' if p.seconds is None else f'{p.seconds:g} s'} [{p.kind}: {p.source}]" for p in fig.parts
        )
        lines.append(f"  {fig.note}")
    return lines


def run(argv: Sequence[str] | None, ctx: Context) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_for(args.stack, ctx.project_dir)
    outputs = load_outputs(args.outputs, args.stack)
    readiness = gather(settings, outputs, peer_outputs(args.outputs, settings.peer_stack), ctx.project_dir)
    report = readiness.report
    report.strict = args.strict
    report.log = new_report(ctx).log
    print(report.table())
    print("\n".join(estimate_lines(readiness)))
    document = readiness.to_dict()
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if args.html is not None:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(render(document))
        print(f"page: {args.html} (open it in a browser: file://{args.html.resolve()})")
    if args.publish:
        print("published: " + ", ".join(publish(document, outputs, datetime.now(UTC))))
    return report.exit_code()


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    return main_guard(run, argv, "status", ctx)


if __name__ == "__main__":
    sys.exit(main())
