"""Fail back to the original primary region once it is back: rebuild it as a replica, then a zero-loss switchover.

`python -m scripts.failback --stack prod --outputs .lab/outputs/prod.json`: rebuilds prod as a replica of the current
primary (pg_rewind, else a fresh base backup; RDS: a read replica in prod's region), waits until it has caught up,
fences the current primary, waits until prod has replayed its final WAL position, promotes prod, moves the consumer
group back, flips DNS, switches the roles back and finally rebuilds the other region as prod's replica again.
Timed, journalled and resumable like scripts.promote.
"""

from __future__ import annotations

from collections.abc import Sequence

from drtopo.context import Context
from drtopo.failover.plan import failback_plan
from drtopo.failover.run import switchover
from drtopo.failover.steps import Kind, app_move, lease_on
from scripts.cli import command_line, failover_flags, failover_options, main_guard, operator, parser, show_switchover


def run(argv: Sequence[str] | None, ctx: Context) -> int:
    p = parser("failback", __doc__.splitlines()[0], changes_state=True)
    failover_flags(p)
    p.add_argument(
        "--acknowledge-diverged",
        action="store_true",
        help="rebuild the old primary although rows it took after the fork are listed, not re-applied (conflicts, "
        "deletes; the list is kept in the configuration bucket and the state folder), or could not be looked for",
    )
    args = p.parse_args(argv)
    outcome = switchover(
        Kind.FAILBACK,
        lambda sw, _pre: failback_plan(sw.target.stack, sw.peer.stack, app_move(sw), lease_on(sw.settings)),
        ctx,
        command=command_line("failback", argv),
        operator=operator(),
        acknowledge_diverged=args.acknowledge_diverged,
        **failover_options(args),
    )
    return show_switchover(outcome)


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    return main_guard(run, argv, "failback", ctx)


if __name__ == "__main__":
    raise SystemExit(main())
