"""python -m scripts.validate: the runbook's post-recovery checks, each with its value and limit.

The stack must be the primary (`--expect standby` checks a standby): its role (the role marker, else its settings),
and its database accepting a write (a rolled-back probe). Service health and p95 latency at the stack's own region,
and which region the failover record answers; tables, row counts, unique transactions, record ages, status
breakdown; measured RPO against the region-failure objective (`--since`, the disaster time); Kafka topics, whether
the MirrorMaker 2 flow runs, its lag per topic, consumer group offsets; the rows an old primary peer took after the
fork that this primary lacks (found, listed in the state folder; `failback` re-applies them); with `--against` a
comparison of every table with another database (counts, checksums per key range, then the differing keys); the
runbook's query time; and for a primary the application itself: an authenticated API call (the bearer token from
the environment variable `drtopo:service.apiAuthEnv` names), a probe event through the Kafka cluster the
application consumes seen as its row through the API, every consumed event's row present, /actuator/prometheus
parsed, memory within its limit. Exit 0 when every check passes, 1 when one fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from drtopo.checks.db import parse_time
from drtopo.checks.validate import GROUPS, against_conninfo, validate
from drtopo.context import Context
from drtopo.database.compare import DEFAULT_LIMIT
from drtopo.outputs import load_outputs, peer_outputs
from drtopo.report import BadInput, settings_for
from drtopo.settings import Role
from scripts.cli import finish, main_guard, new_report, parser


def build_parser() -> argparse.ArgumentParser:
    p = parser("validate", __doc__.splitlines()[0], changes_state=False)
    p.add_argument(
        "--against", metavar="STACK|DSN", help="compare every table with this stack's database or a PostgreSQL DSN"
    )
    p.add_argument(
        "--since",
        metavar="TIME",
        help="the disaster time (ISO 8601 with offset): measure the RPO (default: when the last promote's journal "
        "says the primary was last heard from)",
    )
    p.add_argument("--requests", type=int, default=20, help="requests for the latency p95 (default 20)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="differing keys listed per table (default 20)")
    p.add_argument(
        "--max-mirror-lag", type=int, default=100, metavar="RECORDS", help="allowed MirrorMaker lag per topic"
    )
    p.add_argument("--skip", action="append", default=[], choices=GROUPS, help="leave out a group of checks")
    p.add_argument(
        "--expect",
        choices=[r.value for r in Role],
        default=Role.PRIMARY.value,
        help="the role the stack must be in: primary (default: after a recovery, the stack promote made primary; its "
        "database must accept a write) or standby (a standby's own checks)",
    )
    return p


def _positive(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise BadInput(f"{name} {value} is too small; expected an integer >= {minimum}")


def run(argv: Sequence[str] | None, ctx: Context) -> int:
    args = build_parser().parse_args(argv)
    _positive("--requests", args.requests, 1)
    _positive("--limit", args.limit, 0)
    _positive("--max-mirror-lag", args.max_mirror_lag, 0)
    since = parse_time(args.since) if args.since is not None else None
    settings = settings_for(args.stack, ctx.project_dir)
    other = against_conninfo(args.against, args.stack, args.outputs, ctx.project_dir) if args.against else None
    outputs = load_outputs(args.outputs, args.stack)
    report = validate(
        settings,
        outputs,
        other=other,
        since=since,
        skip=set(args.skip),
        requests=args.requests,
        limit=args.limit,
        max_mirror_lag=args.max_mirror_lag,
        peer=peer_outputs(args.outputs, settings.peer_stack),
        expect=Role(args.expect),
        state_dir=ctx.state_dir,
        # The API token from the environment variable settings name (never a flag: argv is visible to everyone).
        token=os.environ.get(settings.service.api_auth_env) or None,
    )
    report.log = new_report(ctx).log
    return finish(report, args.json_path, strict=args.strict)


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    return main_guard(run, argv, "validate", ctx)


if __name__ == "__main__":
    sys.exit(main())
