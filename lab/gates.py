"""The regions' gates: every connection that crosses a region boundary in the lab goes through its region's gate.

One Toxiproxy server (lab/toxiproxy_build.py; process `gates`, its HTTP API on loopback) holds one proxy per region
and kind, named `<stack>-<kind>`:

    postgres    outside clients and the peer's streaming replication -> the region's PostgreSQL
    kafka       outside host clients -> the broker's GATE listener (advertised as the gate's own port)
    kafka-pods  the peer's MirrorMaker (a pod) -> the broker's PODGATE listener (advertised as NODE_IP:gate port,
                which the lab's bridge forwards to the gate on loopback)
    service     outside clients -> the region's service stand-in (on the Kubernetes node's address)
    aws         the scripts -> the one AWS emulator, as the region's API endpoint (DRTOPO_AWS_ENDPOINTS)
    kube        the stack's kubeconfig context -> the lab's one kube-apiserver
    registry    the lab's containerd (pulling the region's ECR host name) and the peer's replication -> the
                region's container registry (lab/registry.py), started on first use
    egress-<to> the region's pods (the lease's guard) -> the `aws` gate of region <to>: a call out of a region
                crosses its own boundary and then the other's, so it fails when either region is cut off

The lease's witness region (lab/project.py WITNESS_REGION) is a region of the lab with one gate, `witness-aws`, and
nothing behind it but the emulator: `partition("witness")` is the witness region down.

What stays inside a region does not pass a gate: the region's service to its own database, in-region pods to their
own cluster's PODS listener, the WAL agent, the lab's own set-up and status.

A partition adds a `timeout` toxic with timeout 0 in both directions to each of the region's proxies: bytes are
dropped, so open connections and new ones hang until the client's own timeout (never refused), while the region's
processes keep running and talking to each other. A heal removes those toxics and then closes every connection that
lived through the partition (disabling and re-enabling each proxy): Toxiproxy dropped their bytes where TCP would
have retransmitted them, so their streams are no longer whole; clients reconnect. `degrade` adds latency (half the
round trip each way, with jitter) and optionally a bandwidth cap (per connection, each way) to every gate: the WAN
between the regions. `reset_peer` makes some gates reset their connections (Toxiproxy's `reset_peer` toxic: a TCP RST
`after_ms` after the first bytes a connection carries, every connection, new ones too) until `stop_resets`: links that
break mid-stream, as a flapping WAN path or a middlebox dropping long-lived flows does.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import process, toxiproxy_build

PROCESS_NAME = "gates"
WITNESS = "witness"  # the witness region's name among the gates
EGRESS = "egress-"
KINDS = ("postgres", "kafka", "kafka-pods", "service", "aws", "kube", "registry")
PARTITION = "partition"
WAN = "wan"
RESET = "reset"
# The links between the regions themselves: the standby's streaming replication and MirrorMaker's consumer (the
# scripts' database sessions share the database's gate). Clients reaching a region's service are not across the WAN.
WAN_KINDS = ("postgres", "kafka-pods")
STREAMS = ("upstream", "downstream")
API_TIMEOUT_S = 10.0


class GateError(RuntimeError):
    """The gates' server did not do what was asked; the message names the call and its answer."""


def proxy_name(stack: str, kind: str) -> str:
    return f"{stack}-{kind}"


def egress_kind(to: str) -> str:
    """The kind of a region's way out to region `to` (a stack, or WITNESS) (pure)."""
    return f"{EGRESS}{to}"


def split_name(name: str) -> tuple[str, str]:
    """(stack, kind) of a proxy name `<stack>-<kind>` (pure)."""
    if f"-{EGRESS}" in name:
        stack, _, to = name.partition(f"-{EGRESS}")
        return stack, egress_kind(to)
    for kind in KINDS:
        if name.endswith(f"-{kind}"):
            return name.removesuffix(f"-{kind}"), kind
    raise ValueError(f"{name!r} is not a gate proxy name <stack>-<kind>")


@dataclass(frozen=True)
class Proxy:
    """One gate proxy to create: where it listens (loopback) and what it forwards to."""

    name: str
    listen_port: int
    upstream: str

    def document(self) -> dict[str, Any]:
        return {"name": self.name, "listen": f"{process.LOOPBACK}:{self.listen_port}", "upstream": self.upstream}


def partition_toxics() -> list[dict[str, Any]]:
    """The toxics of a partition: every byte dropped both ways, connections held open (pure)."""
    return [
        {"name": f"{PARTITION}-{stream}", "type": "timeout", "stream": stream, "attributes": {"timeout": 0}}
        for stream in STREAMS
    ]


def wan_toxics(latency_ms: int, jitter_ms: int, bandwidth_kbps: int = 0) -> list[dict[str, Any]]:
    """The toxics of a WAN with `latency_ms` round trip (`jitter_ms` around it): half each way; with `bandwidth_kbps`
    also a cap of that many KB/s on each connection, each way (pure)."""
    if latency_ms < 0 or jitter_ms < 0 or bandwidth_kbps < 0:
        got = f"{latency_ms} ms, {jitter_ms} ms, {bandwidth_kbps} KB/s"
        raise ValueError(f"latency, jitter and bandwidth must be 0 or more; got {got}")
    latency = [
        {
            "name": f"{WAN}-{stream}",
            "type": "latency",
            "stream": stream,
            "attributes": {"latency": latency_ms // 2, "jitter": jitter_ms // 2},
        }
        for stream in STREAMS
        if latency_ms or jitter_ms
    ]
    bandwidth = [
        {
            "name": f"{WAN}-bandwidth-{stream}",
            "type": "bandwidth",
            "stream": stream,
            "attributes": {"rate": bandwidth_kbps},
        }
        for stream in STREAMS
        if bandwidth_kbps
    ]
    return latency + bandwidth


def reset_toxics(after_ms: int) -> list[dict[str, Any]]:
    """The toxics that reset every connection (TCP RST) `after_ms` after its first bytes, both ways (pure)."""
    if after_ms < 0:
        raise ValueError(f"the reset delay must be 0 or more ms; got {after_ms}")
    return [
        {"name": f"{RESET}-{stream}", "type": "reset_peer", "stream": stream, "attributes": {"timeout": after_ms}}
        for stream in STREAMS
    ]


def gate_state(toxics: Iterable[dict[str, Any]], enabled: bool = True) -> str:
    """`open`, `partitioned`, `degraded (RTT ms ± J)` or `disabled` from a proxy's toxics (pure)."""
    names = {t["name"]: t for t in toxics}
    if not enabled:
        return "disabled"
    parts = []
    if any(n.startswith(f"{PARTITION}-") for n in names):
        parts.append("partitioned")
    wan = names.get(f"{WAN}-upstream")
    capped = names.get(f"{WAN}-bandwidth-upstream")
    slowed = []
    if wan is not None:
        attributes = wan.get("attributes", {})
        slowed.append(f"{2 * attributes.get('latency', 0)} ms ± {2 * attributes.get('jitter', 0)} ms")
    if capped is not None:
        slowed.append(f"{capped.get('attributes', {}).get('rate', 0)} KB/s")
    if slowed:
        parts.append(f"degraded ({', '.join(slowed)})")
    reset = names.get(f"{RESET}-upstream")
    if reset is not None:
        parts.append(f"resetting (after {reset.get('attributes', {}).get('timeout', 0)} ms)")
    return ", ".join(parts) or "open"


class Gates:
    """The Toxiproxy server at `api_port` on loopback."""

    def __init__(self, api_port: int) -> None:
        self.url = f"http://{process.LOOPBACK}:{api_port}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as answer:
                text = answer.read().decode()
        except urllib.error.HTTPError as exc:
            raise GateError(f"{method} {path}: HTTP {exc.code} {exc.read().decode(errors='replace').strip()}") from None
        except OSError as exc:
            raise GateError(f"{method} {path}: the gates' server at {self.url} did not answer ({exc})") from None
        return json.loads(text) if text.strip() else None

    def create(self, proxies: Iterable[Proxy]) -> None:
        """Create (or update) the proxies, all enabled, without toxics."""
        for proxy in proxies:
            self._call("POST", "/populate", [{**proxy.document(), "enabled": True}])

    def proxies(self) -> dict[str, dict[str, Any]]:
        return dict(self._call("GET", "/proxies") or {})

    def names(self, stack: str | None = None) -> list[str]:
        return sorted(n for n in self.proxies() if stack is None or split_name(n)[0] == stack)

    def _set_toxics(self, name: str, prefix: str, toxics: list[dict[str, Any]]) -> None:
        present = {t["name"] for t in self._call("GET", f"/proxies/{name}/toxics") or []}
        for toxic in (n for n in present if n.startswith(f"{prefix}-")):
            self._call("DELETE", f"/proxies/{name}/toxics/{toxic}")
        for toxic in toxics:
            self._call("POST", f"/proxies/{name}/toxics", toxic)

    def partition(self, stack: str, kinds: Iterable[str] | None = None) -> list[str]:
        """Cut the region of `stack` off: every one of its gates (or only those of `kinds`, e.g. `aws`: its API
        alone) drops all bytes both ways. Returns the proxies."""
        names = self._named(stack, kinds)
        for name in names:
            self._set_toxics(name, PARTITION, partition_toxics())
        return names

    def heal(self, stack: str | None = None) -> list[str]:
        """End the partition of `stack` (default every region), closing the connections that lived through it.
        Returns the proxies healed (a gate that was not partitioned is left alone, its connections too)."""
        names = [
            name
            for name, info in sorted(self.proxies().items())
            if (stack is None or split_name(name)[0] == stack)
            and any(t["name"].startswith(f"{PARTITION}-") for t in info.get("toxics") or [])
        ]
        for name in names:
            self._set_toxics(name, PARTITION, [])
            self._call("POST", f"/proxies/{name}", {"enabled": False})
            self._call("POST", f"/proxies/{name}", {"enabled": True})
        return names

    def degrade(
        self, latency_ms: int, jitter_ms: int = 0, bandwidth_kbps: int = 0, kinds: Iterable[str] | None = None
    ) -> list[str]:
        """Give every gate (or those of `kinds`, e.g. WAN_KINDS) the WAN's latency (round trip `latency_ms`, jitter
        `jitter_ms`) and, when given, a cap of `bandwidth_kbps` KB/s per connection; all 0 takes the WAN away."""
        toxics = wan_toxics(latency_ms, jitter_ms, bandwidth_kbps)
        names = self._named(None, kinds)
        for name in names:
            self._set_toxics(name, WAN, toxics)
        return names

    def _named(self, stack: str | None, kinds: Iterable[str] | None) -> list[str]:
        """The proxies of `stack` (None: every stack) of `kinds` (None: every kind); GateError when there is none."""
        wanted = None if kinds is None else set(kinds)
        unknown = None if wanted is None else {k for k in wanted if not k.startswith(EGRESS)} - set(KINDS)
        if unknown:
            raise ValueError(f"unknown gate kinds {sorted(unknown)}; expected some of {', '.join(KINDS)} or egress-*")
        names = [n for n in self.names(stack) if wanted is None or split_name(n)[1] in wanted]
        if not names:
            raise GateError(f"no gate{'' if stack is None else f' of stack {stack!r}'} at {self.url}")
        return names

    def reset_peer(self, stack: str, kinds: Iterable[str] | None = None, after_ms: int = 0) -> list[str]:
        """Make the gates of `stack` (or only those of `kinds`, e.g. `kafka-pods`: the peer's MirrorMaker's link)
        reset every connection `after_ms` after its first bytes, until `stop_resets`. Returns the proxies."""
        names = self._named(stack, kinds)
        for name in names:
            self._set_toxics(name, RESET, reset_toxics(after_ms))
        return names

    def stop_resets(self, stack: str | None = None) -> list[str]:
        """No more resets on the gates of `stack` (default every gate); returns the proxies that were resetting."""
        names = [
            name
            for name, info in sorted(self.proxies().items())
            if (stack is None or split_name(name)[0] == stack)
            and any(t["name"].startswith(f"{RESET}-") for t in info.get("toxics") or [])
        ]
        for name in names:
            self._set_toxics(name, RESET, [])
        return names

    def reset(self) -> None:
        """Every gate open: no toxic anywhere, every proxy enabled (connections kept)."""
        self._call("POST", "/reset")

    def status(self) -> dict[str, dict[str, Any]]:
        """Per proxy: listen, upstream and its state (`gate_state`)."""
        return {
            name: {
                "listen": info["listen"],
                "upstream": info["upstream"],
                "state": gate_state(info.get("toxics") or [], bool(info.get("enabled", True))),
            }
            for name, info in sorted(self.proxies().items())
        }


def spawn(root: Path, api_port: int) -> int:
    """Start the gates' Toxiproxy server (recorded PID) and return once its API answers."""
    argv = [str(toxiproxy_build.binary()), "-host", process.LOOPBACK, "-port", str(api_port)]
    pid = process.spawn(root, PROCESS_NAME, argv)
    process.wait_port(api_port, 30, "the gates' Toxiproxy server", pid)
    return pid
