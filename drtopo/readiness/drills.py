"""The drills' reports in the configuration bucket: `drills/<scenario>/<time>.json`, one object per scenario run,
so the history survives the operator's machine; `status` reads the newest and the page charts them over time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from drtopo.backup.store import encryption_args, s3_client
from drtopo.outputs import StackOutputs

PREFIX = "drills/"
# The history charted per scenario: the newest this many reports.
HISTORY = 20


def drill_key(scenario: str, at: datetime) -> str:
    return f"{PREFIX}{scenario}/{at.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"


def scenario_record(scenario: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """What is kept of one scenario of a drill report (pure): result, time, measured RTO/RPO and objectives."""
    measured = scenario.get("measured") or {}
    rto = measured.get("client_rto_seconds")
    return {
        "scenario": scenario["scenario"],
        "at": at.astimezone(UTC).isoformat(timespec="seconds"),
        "ok": bool(scenario.get("ok")),
        "error": scenario.get("error"),
        "rto_seconds": measured.get("rto_seconds") if rto is None else rto,
        "rpo_seconds": measured.get("rpo_seconds"),
        "rows_lost": measured.get("rows_lost"),
        "objectives": scenario.get("objectives"),
        "phases": scenario.get("phases") or [],
    }


def record(document: Mapping[str, Any], buckets: Iterable[StackOutputs], at: datetime) -> list[str]:
    """Put each scenario of a drill report into every stack's configuration bucket; returns the URLs written."""
    written = []
    for outputs in buckets:
        s3 = s3_client(outputs)
        for scenario in document.get("scenarios", []):
            key = drill_key(scenario["scenario"], at)
            s3.put_object(
                Bucket=outputs.config_bucket,
                Key=key,
                Body=json.dumps(scenario_record(scenario, at), indent=1, default=str).encode(),
                ContentType="application/json",
                **encryption_args(outputs),
            )
            written.append(f"s3://{outputs.config_bucket}/{key}")
    return written


def history(outputs: StackOutputs, per_scenario: int = HISTORY) -> dict[str, list[dict[str, Any]]]:
    """Scenario -> its newest `per_scenario` records, oldest first, from the stack's configuration bucket."""
    s3 = s3_client(outputs)
    keys: dict[str, list[str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=outputs.config_bucket, Prefix=PREFIX):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(PREFIX) :].split("/")
            if len(parts) == 2 and parts[1].endswith(".json"):
                keys.setdefault(parts[0], []).append(obj["Key"])
    found = {}
    for scenario, names in sorted(keys.items()):
        found[scenario] = [
            json.loads(s3.get_object(Bucket=outputs.config_bucket, Key=k)["Body"].read())
            for k in sorted(names)[-per_scenario:]
        ]
    return found


def newest(runs: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The newest drill (pure): every scenario recorded at the newest time of any, with `ok` all of theirs."""
    latest = [r for rs in runs.values() for r in rs]
    if not latest:
        return None
    at = max(r["at"] for r in latest)
    scenarios = [r for r in latest if r["at"] == at]
    return {"at": at, "ok": all(r["ok"] for r in scenarios), "scenarios": scenarios}
