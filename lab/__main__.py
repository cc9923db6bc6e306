"""`python -m lab up|down|status [--root DIR]`: start, stop or inspect the local DR lab (see lab/API.md);
`python -m lab kubectl ARGS...` runs the lab's kubectl against the lab's cluster; `python -m lab inbox [--json]`
lists what the lab's incident inbox received from both stacks' incident topics (lab/inbox.py).

The regions' gates (lab/gates.py): `python -m lab partition REGION|STACK` cuts a region off (its servers keep
running), `python -m lab heal [REGION|STACK]` ends a partition (default: every one), `python -m lab degrade --latency
MS [--jitter MS] [--bandwidth KBPS]` gives the WAN between the regions a round-trip latency and, when given, a cap
per connection in KB/s (0 takes them away).

`python -m lab up --fencing lease` runs both stacks with the primary lease (drtopo:fencing, short: lab/project.py
LAB_LEASE) and each primary's guard on the lab's Kubernetes; on a lab already up it switches the lease on or off
(`--fencing off`). `python -m lab partition witness` cuts off the lease's witness region.

`status` exits 1 when the lab is not (fully) running, so scripts and CI can test for it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from lab import gates, kube, kube_build
from lab.core import Lab, LabNotUp, default_root


def print_status(status: dict[str, Any]) -> None:
    print(f"lab {status['root']}: {'up' if status['up'] else 'NOT running'}")
    for name, info in status["servers"].items():
        state = "running" if info.get("running") else "stopped"
        extra = []
        keys = ("role", "streaming", "lag_bytes", "lag_seconds", "url", "bootstrap", "pod", "restarts", "flow", "lag")
        for key in (*keys, "error"):
            if info.get(key) is not None:
                extra.append(f"{key}={info[key]}")
        port, pid = info.get("port") or "-", info.get("pid") or "-"
        print(f"  {name:<24} port {port!s:<6} pid {pid!s:<8} {state:<8} {' '.join(extra)}")
    for name, info in (status.get("gates") or {}).items():
        if name == "error":
            print(f"  gates: {info}")
        else:
            print(f"  gate {name:<19} {info['listen']:<21} -> {info['upstream']:<21} {info['state']}")
    cluster = status.get("kubernetes", {})
    if "node" in cluster:
        node = cluster["node"]
        print(f"  kubernetes {cluster['server']}: node {node['name']} {'Ready' if node['ready'] else 'NOT Ready'}")
        for namespace, pods in sorted(cluster["pods"].items()):
            listed = ", ".join(f"{name} {p['phase']} ({p['restarts']} restarts)" for name, p in sorted(pods.items()))
            print(f"    {namespace}: {listed}")
    elif "error" in cluster:
        print(f"  kubernetes: {cluster['error']}")


def print_inbox(entries: list[dict[str, Any]]) -> None:
    for e in entries:
        print(f"{e.get('Timestamp') or e.get('ReceivedAt')}  {e.get('Region') or '-':<10} {e.get('Subject') or ''}")
        for line in str(e.get("Message") or "").splitlines():
            print(f"    {line}")
    print(f"{len(entries)} message(s)")


def kubectl_passthrough(lab: Lab, args: list[str]) -> int:
    if not kube.Layout(lab.root).kubeconfig.is_file():
        print(f"no lab cluster at {lab.root}; start one with `python -m lab up`", file=sys.stderr)
        return 2
    argv = [str(kube_build.binary("kubectl")), f"--kubeconfig={kube.Layout(lab.root).kubeconfig}", *args]
    return subprocess.run(argv, check=False).returncode


def gate_command(lab: Lab, args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    """partition, heal, degrade: one line saying which gates changed."""
    try:
        if args.command == "partition":
            if args.target is None:
                p.error("partition needs a REGION or STACK, e.g. `python -m lab partition prod`")
            changed, what = lab.partition(args.target), f"{args.target} partitioned"
        elif args.command == "heal":
            changed, what = lab.heal(args.target), f"{args.target or 'every region'} healed"
        else:
            if args.latency is None:
                p.error("degrade needs --latency MS (0 takes the WAN's latency away)")
            changed = lab.degrade(args.latency, args.jitter, args.bandwidth)
            capped = f", {args.bandwidth} KB/s per connection" if args.bandwidth else ""
            what = f"WAN round trip +{args.latency} ms ± {args.jitter} ms{capped}"
    except (ValueError, LabNotUp, gates.GateError) as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 2
    print(f"lab {args.command}: {what} ({', '.join(changed)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab", description="The local DR lab on loopback.")
    p.add_argument("command", choices=("up", "down", "status", "kubectl", "partition", "heal", "degrade", "inbox"))
    p.add_argument("target", nargs="?", metavar="REGION|STACK", help="partition, heal: prod, dr or their regions")
    p.add_argument("--latency", type=int, metavar="MS", help="degrade: the WAN's round-trip latency in ms")
    p.add_argument("--jitter", type=int, default=0, metavar="MS", help="degrade: its jitter in ms (default 0)")
    p.add_argument(
        "--bandwidth", type=int, default=0, metavar="KBPS", help="degrade: cap each connection at KB/s (default none)"
    )
    p.add_argument("--root", type=Path, default=None, help=f"lab folder (default $DRTOPO_LAB_DIR or {default_root()})")
    p.add_argument("--json", action="store_true", help="status (or inbox) as JSON")
    p.add_argument(
        "--fencing",
        choices=("off", "lease"),
        help="up: the primary lease off (default) or on (each primary's guard on the lab's Kubernetes)",
    )
    given = list(sys.argv[1:] if argv is None else argv)
    # Everything after `kubectl` is kubectl's own (`python -m lab [--root DIR] kubectl get pods -A`).
    passed = given[given.index("kubectl") + 1 :] if "kubectl" in given else []
    args = p.parse_args(given[: len(given) - len(passed)])
    lab = Lab(args.root, fencing=args.fencing == "lease")
    if args.fencing is not None and args.command != "up":
        p.error("--fencing goes with up")
    if args.command == "kubectl":
        return kubectl_passthrough(lab, passed)
    if args.command in ("partition", "heal", "degrade"):
        return gate_command(lab, args, p)
    if args.target is not None:
        p.error(f"{args.command} takes no REGION|STACK")
    if args.command == "inbox":
        entries = lab.inbox()
        if args.json:
            json.dump(entries, sys.stdout, indent=2, default=str)
            print()
        else:
            print_inbox(entries)
        return 0
    if args.command == "up":
        try:
            seconds = lab.up()
        except Exception as exc:  # every server it started is stopped again; say why in one line
            print(f"lab up failed: {type(exc).__name__}: {exc}; logs in {lab.root / 'logs'}", file=sys.stderr)
            return 1
        if seconds:
            phases = ", ".join(f"{name} {t:.1f} s" for name, t in lab.timings.items())
            print(f"lab up at {lab.root} in {seconds:.1f} s ({phases})")
        elif args.fencing is not None and lab.fencing_on != (args.fencing == "lease"):
            lab.set_fencing(args.fencing == "lease")
            print(f"lab already up at {lab.root}: the primary lease switched {args.fencing}")
        else:
            print(f"lab already up at {lab.root}")
        print(f"load its environment with: set -a; . {lab.env_path}; set +a")
        return 0
    if args.command == "down":
        stopped = lab.down()
        print(f"lab down at {lab.root}: stopped {', '.join(stopped) or 'nothing'}")
        return 0
    status = lab.status()
    if args.json:
        json.dump(status, sys.stdout, indent=2, default=str)
        print()
    else:
        print_status(status)
    return 0 if status["up"] else 1


if __name__ == "__main__":
    sys.exit(main())
