"""python -m scripts.guard_alive FILE SECONDS: the guard's liveness probe (components/guard.py).

Exit 0 when the guard's heartbeat FILE (`python -m scripts.guard --heartbeat FILE`) was touched within SECONDS, 1
when it is older or missing (Kubernetes then restarts the pod), 2 for bad input. Prints nothing when alive: a probe
runs every few seconds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from drtopo.fencing.heartbeat import age


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.guard_alive", description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, help="the guard's heartbeat file")
    p.add_argument("seconds", type=float, help="the oldest heartbeat that counts as alive")
    args = p.parse_args(argv)
    if args.seconds <= 0:
        print(f"error: SECONDS {args.seconds:g} is not positive; expected a number of seconds > 0", file=sys.stderr)
        return 2
    seconds = age(args.file)
    if seconds is None:
        print(f"no heartbeat at {args.file}", file=sys.stderr)
        return 1
    if seconds > args.seconds:
        print(f"last heartbeat {seconds:.0f} s ago, beyond {args.seconds:g} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
