"""The drill's history kept beside the stacks: each scenario's result recorded in every stack's configuration bucket
(`drills/<scenario>/<time>.json`, `drtopo.readiness.drills`), where `scripts.status` reads the last drill and charts
them over time. Recording never fails a drill: a bucket that cannot be written is one line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError

from drtopo.errors import one_line
from drtopo.outputs import load_outputs
from drtopo.readiness import drills
from lab.core import Lab
from scripts.drill.report import ScenarioResult


def keep(lab: Lab, results: Sequence[ScenarioResult]) -> list[str]:
    """Record `results` in the lab stacks' configuration buckets; returns the objects written."""
    try:
        stacks = [load_outputs(region.outputs_path, region.stack) for region in (lab.prod, lab.dr)]
        written = drills.record({"scenarios": [r.to_dict() for r in results]}, stacks, datetime.now(UTC))
    except (ClientError, BotoCoreError, OSError) as exc:
        print(f"drill report not kept in the configuration buckets: {one_line(exc)}")
        return []
    print(f"drill report kept in {len(written)} objects: {', '.join(written)}")
    return written
