"""Publishing a readiness run (what the scheduled check does): the JSON into the stack's configuration bucket
(`readiness/<stack>/<time>.json` and `readiness/<stack>/latest.json`) and a CloudWatch metric per item
(`ItemFailing`, 1 when the item fails, by stack and item) plus the totals `ItemsFailing` and `ItemsSkipped` per stack,
on which an alarm routes to the alert topic."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from drtopo.aws import stack_client
from drtopo.backup.store import encryption_args, s3_client
from drtopo.outputs import StackOutputs
from drtopo.report import FAIL, SKIP

NAMESPACE = "drtopo/Readiness"
ITEM_METRIC, FAILING_METRIC, SKIPPED_METRIC = "ItemFailing", "ItemsFailing", "ItemsSkipped"
PREFIX = "readiness/"


def readiness_key(stack: str, at: datetime | None = None) -> str:
    """The run's object (`at`), or with no time the stack's latest."""
    name = "latest" if at is None else f"{at.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return f"{PREFIX}{stack}/{name}.json"


def metric_data(document: Mapping[str, Any], stack: str, at: datetime) -> list[dict[str, Any]]:
    """The metrics of one run (pure): one datum per item and the two totals."""
    checks = document["checks"]

    def datum(name: str, value: float, **dimensions: str) -> dict[str, Any]:
        dims = [{"Name": "Stack", "Value": stack}, *({"Name": k, "Value": v} for k, v in dimensions.items())]
        return {"MetricName": name, "Dimensions": dims, "Timestamp": at, "Value": value, "Unit": "Count"}

    return [
        *(datum(ITEM_METRIC, float(c["outcome"] == FAIL), Item=c["name"]) for c in checks),
        datum(FAILING_METRIC, float(sum(c["outcome"] == FAIL for c in checks))),
        datum(SKIPPED_METRIC, float(sum(c["outcome"] == SKIP for c in checks))),
    ]


def publish(document: Mapping[str, Any], outputs: StackOutputs, at: datetime) -> list[str]:
    """Put the run into the configuration bucket and its metrics into CloudWatch; returns where it went."""
    body = json.dumps(document, indent=1, default=str).encode()
    s3 = s3_client(outputs)
    written = []
    for key in (readiness_key(outputs.stack, at), readiness_key(outputs.stack)):
        s3.put_object(
            Bucket=outputs.config_bucket, Key=key, Body=body, ContentType="application/json", **encryption_args(outputs)
        )
        written.append(f"s3://{outputs.config_bucket}/{key}")
    data = metric_data(document, outputs.stack, at)
    stack_client("cloudwatch", outputs).put_metric_data(Namespace=NAMESPACE, MetricData=data)
    written.append(f"cloudwatch {NAMESPACE}: {len(data)} metrics in {outputs.region}")
    return written
