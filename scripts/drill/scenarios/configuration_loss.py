"""configuration-loss: the stack's configuration objects are lost and restored from the config backup bucket.

The backup is taken with `scripts.backup config`, the files are deleted, `scripts.restore config` brings them back,
and each is compared byte for byte (SHA-256) with what was there. RTO is the time from the loss until every
file is back and identical; RPO is 0 when nothing differs.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from scripts.drill.report import ScenarioResult
from scripts.drill.scenarios.context import DrillContext

NAME = "configuration-loss"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("Pulumi*.yaml"))}


def run(ctx: DrillContext, result: ScenarioResult) -> None:
    clock = ctx.clock()
    stack = "prod"
    project = ctx.lab.project_dir
    outputs = ["--stack", stack, "--outputs", str(ctx.outputs_path(stack))]
    before = _digests(project)
    with clock.step("scripts.backup config"):
        code = ctx.run("backup", ["config", *outputs, "--json", str(ctx.json_dir / "config-backup.json")])
    result.checks.check("config backup succeeded", code == 0, f"exit code {code}", code, 0)
    failure_at = time.time()
    result.measured["failure_at_seconds"] = round(clock.elapsed(), 3)
    with clock.step("configuration lost: the stack files are deleted"):
        for name in before:
            (project / name).unlink()
    with clock.step("scripts.restore config"):
        code = ctx.run("restore", ["config", *outputs, "--json", str(ctx.json_dir / "config-restore.json")])
    restored_at = time.time()
    result.checks.check("config restore succeeded", code == 0, f"exit code {code}", code, 0)
    after = _digests(project)
    differing = sorted(n for n in before if after.get(n) != before[n])
    result.checks.check(
        "restored byte for byte",
        not differing,
        f"{len(before) - len(differing)}/{len(before)} files identical"
        + (f"; differ: {differing}" if differing else ""),
    )
    result.measured.update(
        rto_seconds=round(restored_at - failure_at, 3) if not differing else None,
        rpo_seconds=0.0 if not differing else None,
        rows_lost=0,
        files_restored=len(before) - len(differing),
    )
    result.steps = clock.steps
