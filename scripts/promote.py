"""Fail over to a standby stack: guard against data loss, fence, promote, move Kafka, the application, DNS and roles.

`python -m scripts.promote --stack dr --outputs .lab/outputs/dr.json` (the peer's outputs are read from the sibling
`<peer>.json`). With the old primary reachable this is a planned switchover with zero data loss (fence, drain to its
final WAL position, promote); with it dead, the replica lag measured first bounds what is lost and must be within the
region-failure RPO unless `--accept-data-loss`. Every step is timed and journalled; a rerun resumes an interrupted run.
"""

from __future__ import annotations

from collections.abc import Sequence

from drtopo.context import Context
from drtopo.failover.plan import promote_plan
from drtopo.failover.run import switchover
from drtopo.failover.steps import Kind, app_move, lease_on
from scripts.cli import command_line, failover_flags, failover_options, main_guard, operator, parser, show_switchover


def run(argv: Sequence[str] | None, ctx: Context) -> int:
    p = parser("promote", __doc__.splitlines()[0], changes_state=True)
    failover_flags(p)
    outcome = switchover(
        Kind.PROMOTE,
        lambda sw, pre: promote_plan(
            sw.target.stack, sw.peer.stack, pre.peer_reachable, app_move(sw), lease_on(sw.settings)
        ),
        ctx,
        command=command_line("promote", argv),
        operator=operator(),
        **failover_options(p.parse_args(argv)),
    )
    return show_switchover(outcome)


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    return main_guard(run, argv, "promote", ctx)


if __name__ == "__main__":
    raise SystemExit(main())
