"""Helpers shared by the backup/restore/PITR integration tests: run a script's `main` in-process and read its report,
and put rows into the lab's service tables."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg

from drtopo.database.connect import connect
from drtopo.outputs import StackOutputs
from lab.core import Lab


def run_cli(main: Callable[[Sequence[str]], int], args: list[str], report: Path) -> tuple[int, dict[str, Any]]:
    """Exit code and JSON report (empty when the script stopped before writing one, e.g. on bad input)."""
    report.unlink(missing_ok=True)
    code = main([*args, "--json", str(report)])
    return code, json.loads(report.read_text()) if report.exists() else {}


def stack_args(lab: Lab, stack: str = "prod") -> list[str]:
    return ["--stack", stack, "--outputs", str(lab.region(stack).outputs_path)]


def insert_rows(conn: psycopg.Connection, prefix: str, count: int) -> None:
    conn.execute(
        "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation)"
        " SELECT %s || g, 'ORDER', 'rejected', 'CREATE' FROM generate_series(1, %s) g",
        (prefix, count),
    )


def rows_around_t(outputs: StackOutputs, prefix: str) -> tuple[int, datetime]:
    """300 rows `<prefix>-a-...` committed before a time T and 200 `<prefix>-b-...` after it; returns the row count
    before the first batch and T (a restore to T must hold the first batch and none of the second)."""
    with connect(outputs) as conn:
        before = conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()[0]
        insert_rows(conn, f"{prefix}-a-{time.time_ns()}-", 300)
        time.sleep(0.3)
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        time.sleep(0.3)
        insert_rows(conn, f"{prefix}-b-", 200)
    return before, target


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def empty_bucket(region: str, bucket: str) -> None:
    """Delete every version of every object (the lab's buckets are versioned)."""
    s3 = boto3.client("s3", region_name=region)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
