"""python -m scripts.guard: the primary lease's guard of one stack (drtopo/fencing/guard.py).

Renews the lease every `drtopo:fencing.renewSeconds` in the pair's three stores and fences the stack's own database
(read-only by default, client sessions ended) when the lease lapses or a newer epoch is taken, and keeps the region's
application at 0 replicas while fenced. Runs until stopped (SIGTERM, Ctrl-C) or for `--seconds`. Exit 0 when it
ended holding the lease, 1 when it fenced, 2 for bad input.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from drtopo.context import Context
from drtopo.fencing.guard import guard_for
from drtopo.fencing.heartbeat import beat
from drtopo.outputs import load_outputs, peer_outputs
from drtopo.report import BadInput, settings_for
from scripts.cli import finish, main_guard, new_report, parser


def build_parser() -> argparse.ArgumentParser:
    p = parser("guard", __doc__.splitlines()[0], changes_state=False)
    p.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds (default: run until stopped)")
    p.add_argument(
        "--heartbeat",
        type=Path,
        metavar="FILE",
        help="touch FILE after every step (the liveness probe, python -m scripts.guard_alive, reads its age)",
    )
    return p


def run(argv: Sequence[str] | None, ctx: Context) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        raise BadInput(f"--seconds {args.seconds:g} is not positive; expected a number of seconds > 0")
    settings = settings_for(args.stack, ctx.project_dir)
    own = load_outputs(args.outputs, args.stack)
    peer = peer_outputs(args.outputs, settings.peer_stack)
    if peer is None:
        raise BadInput(f"no outputs of the peer stack {settings.peer_stack}; expected them beside {args.outputs}")
    try:
        guard = guard_for(settings, own, peer, ctx.reporter)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    heartbeat = args.heartbeat
    state = guard.run(stop, args.seconds, (lambda _: beat(heartbeat)) if heartbeat else None)
    report = new_report(ctx)
    report.measured["guard"] = state.to_dict()
    report.check("lease", not state.why, state.why or (state.holding.describe() if state.holding else "held"))
    if state.why:
        report.check("fence", state.fenced, state.fences[-1]["proof"] if state.fences else "not fenced yet")
        if guard.writers is not None:
            report.check("application", state.app_replicas == 0, state.application_line(guard.writers.where))
    return finish(report, args.json_path)


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    return main_guard(run, argv, "guard", ctx)


if __name__ == "__main__":
    sys.exit(main())
