"""python -m scripts.validate: the runbook's post-recovery checks, each with its value and limit.

Service health and p95 latency; tables, row counts, unique transactions, record ages, status breakdown; measured
RPO against the region-failure objective (`--since`, the disaster time); Kafka topics, MirrorMaker 2 lag per topic,
consumer group offsets; and with `--against` a comparison of every table with another database (counts, checksums
per key range, then the differing keys). Exit 0 when every check passes, 1 when one fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import psycopg

from drtopo.checks.db import EXCEPTIONS_TABLE, exception_checks, parse_time, rpo_check, table_checks
from drtopo.checks.kafka import kafka_checks
from drtopo.checks.service import health_check, latency_check
from drtopo.database.compare import DEFAULT_LIMIT, CompareError, compare
from drtopo.database.connect import connect
from drtopo.outputs import StackOutputs, load_outputs, peer_outputs_path
from drtopo.report import BadInput, Report, main_guard, settings_for
from drtopo.settings import STACKS, Settings
from scripts.cli import parser

GROUPS = ("service", "database", "kafka", "compare")


def build_parser() -> argparse.ArgumentParser:
    p = parser("validate", __doc__.splitlines()[0], changes_state=False)
    p.add_argument(
        "--against", metavar="STACK|DSN", help="compare every table with this stack's database or a PostgreSQL DSN"
    )
    p.add_argument("--since", metavar="TIME", help="the disaster time (ISO 8601 with offset): measure the RPO")
    p.add_argument("--requests", type=int, default=20, help="requests for the latency p95 (default 20)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="differing keys listed per table (default 20)")
    p.add_argument(
        "--max-mirror-lag", type=int, default=100, metavar="RECORDS", help="allowed MirrorMaker lag per topic"
    )
    p.add_argument("--skip", action="append", default=[], choices=GROUPS, help="leave out a group of checks")
    return p


def _positive(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise BadInput(f"{name} {value} is too small; expected an integer >= {minimum}")


def against_conninfo(against: str, stack: str, outputs_path: Path | None) -> StackOutputs | str:
    """The other side of the comparison: the outputs of a stack, or a DSN as given."""
    if against in STACKS:
        if against == stack:
            raise BadInput(f"--against {against!r} is the stack being validated; expected the other stack or a DSN")
        return load_outputs(peer_outputs_path(outputs_path, against), against)
    if against.startswith(("postgresql://", "postgres://")) or "=" in against:
        try:
            psycopg.conninfo.conninfo_to_dict(against)
        except psycopg.ProgrammingError as exc:
            raise BadInput(f"--against {against!r} is not a valid DSN ({exc})") from None
        return against
    raise BadInput(f"--against {against!r} is unknown; expected {' or '.join(STACKS)} or a PostgreSQL DSN")


def _connect_other(other: StackOutputs | str) -> psycopg.Connection:
    if isinstance(other, str):
        return psycopg.connect(other, autocommit=True, connect_timeout=3)
    return connect(other)


def database_checks(report: Report, conn: psycopg.Connection, settings: Settings, since: datetime | None) -> None:
    present = table_checks(report, conn, settings.database.tables)
    if EXCEPTIONS_TABLE in present:
        exception_checks(report, conn)
        if since is not None:
            rpo_check(report, conn, since, settings.objectives.region_failure.rpo_seconds)


def compare_checks(
    report: Report, conn: psycopg.Connection, other: StackOutputs | str, tables: Sequence[str], limit: int
) -> None:
    name = other.stack if isinstance(other, StackOutputs) else "DSN"
    try:
        reference = _connect_other(other)
    except psycopg.OperationalError as exc:
        report.check("compare.connect", False, f"{name}: {str(exc).strip().splitlines()[0]}")
        return
    with reference:
        try:
            diffs = compare(reference, conn, tables, limit=limit)
        except CompareError as exc:
            report.check("compare", False, str(exc))
            return
    report.measured["compare"] = [d.to_dict() for d in diffs]
    for d in diffs:
        report.check(
            f"compare.rows.{d.table}", d.reference_rows == d.target_rows, f"vs {name}", d.target_rows, d.reference_rows
        )
        differing = len(d.keys.missing) + len(d.keys.extra) + len(d.keys.changed)
        report.check(f"compare.keys.{d.table}", d.equal, f"vs {name} in {d.seconds:.2f} s: {d.summary()}", differing, 0)


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _positive("--requests", args.requests, 1)
    _positive("--limit", args.limit, 0)
    _positive("--max-mirror-lag", args.max_mirror_lag, 0)
    since = parse_time(args.since) if args.since is not None else None
    settings = settings_for(args.stack)
    other = against_conninfo(args.against, args.stack, args.outputs) if args.against else None
    outputs = load_outputs(args.outputs, args.stack)
    skip = set(args.skip)
    report = Report()
    if "service" not in skip and health_check(report, outputs.service_url, settings.service.health_path):
        latency_check(report, outputs.service_url, args.requests, settings.service.latency_p95_ms)
    if not {"database", "compare"} <= skip:
        try:
            conn = connect(outputs)
        except psycopg.OperationalError as exc:
            report.check(
                "db.connect", False, f"{outputs.db_address}:{outputs.db_port}: {str(exc).strip().splitlines()[0]}"
            )
        else:
            with conn:
                if "database" not in skip:
                    database_checks(report, conn, settings, since)
                if other is not None and "compare" not in skip:
                    compare_checks(report, conn, other, settings.database.tables, args.limit)
    if "kafka" not in skip:
        kafka_checks(report, settings, outputs, args.max_mirror_lag)
    report.print_table()
    report.write(args.json_path)
    return report.exit_code()


def main(argv: Sequence[str] | None = None) -> int:
    return main_guard(run, argv)


if __name__ == "__main__":
    sys.exit(main())
