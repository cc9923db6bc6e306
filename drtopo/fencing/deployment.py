"""The guard's Deployment in a stack's cluster (components/guard.py declares it), as promote and failback hand the
lease over: scaled through the stack's own kubeconfig context, its pods waited for, its renewals seen in the stores.

A guard that ran before a role switch may hold a decision it never takes back (a fence: drtopo/fencing/guard.py),
so the new primary's guard is restarted, not merely scaled up: stopped, then started once its database is writable
again; the fresh guard adopts the epoch promote took (its stack is the holder) and renews it. The old primary's guard
is stopped only once its database refuses writes by the platform's fence (a planned switchover, a failback); while
the old primary does not answer, its guard is left running: it is what fences the old primary the moment it answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drtopo.backup.kube_export import kubectl, last_line
from drtopo.fencing.lease import Lease
from drtopo.fencing.quorum import LeaseStore, Quorum
from drtopo.fencing.store import GUARD_NAME
from drtopo.settings import Settings

# The recommended name label every drtopo workload carries (components/pod_security.py): the guard's pods by it.
SELECTOR = f"app.kubernetes.io/name={GUARD_NAME}"
POLL_SECONDS = 0.5


class GuardError(RuntimeError):
    """The guard's Deployment could not be scaled or did not get where it was told within its deadline."""


@dataclass(frozen=True)
class GuardDeployment:
    """One stack's guard: its Deployment in the stack's namespace, through the stack's kubeconfig context."""

    settings: Settings

    @property
    def where(self) -> str:
        kube = self.settings.kubernetes
        return f"deployment/{GUARD_NAME} in {kube.namespace} (context {kube.context})"

    def _kubectl(self, *args: str) -> str:
        kube = self.settings.kubernetes
        done = kubectl(kube.context, *args, "-n", kube.namespace)
        if done is None:
            raise GuardError(f"{self.where}: the cluster's API gave no answer (kubectl {args[0]})")
        if done.returncode != 0:
            raise GuardError(f"{self.where}: kubectl {args[0]} failed: {last_line(done.stderr)}")
        return done.stdout

    def scale(self, replicas: int) -> None:
        self._kubectl("scale", f"deployment/{GUARD_NAME}", f"--replicas={replicas}")

    def running(self) -> int:
        """How many of its pods run, none of them being deleted."""
        listing = json.loads(self._kubectl("get", "pods", "-l", SELECTOR, "-o", "json"))
        return sum(
            1
            for pod in listing.get("items", [])
            if pod.get("status", {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
        )

    def pods(self) -> int:
        """How many of its pods exist (any phase)."""
        return len(json.loads(self._kubectl("get", "pods", "-l", SELECTOR, "-o", "json")).get("items", []))

    def wait(self, replicas: int, timeout: float, sleep: Callable[[float], None] = time.sleep) -> float:
        """Until exactly `replicas` pods run (0: none is left at all); returns the seconds waited."""
        started = time.monotonic()
        while True:
            count = self.pods() if replicas == 0 else self.running()
            if count == replicas:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise GuardError(f"{self.where}: {count} pod(s), not {replicas}, after {timeout:g} s")
            sleep(POLL_SECONDS)

    def stop(self, timeout: float) -> float:
        self.scale(0)
        return self.wait(0, timeout)

    def start(self, timeout: float) -> float:
        self.scale(1)
        return self.wait(1, timeout)


def wait_renewing(
    stores: Sequence[LeaseStore],
    holder: str,
    timeout: float,
    round_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.monotonic,
) -> Lease:
    """Until a majority of the stores shows `holder`'s lease renewed since the first read: its guard is renewing.
    Returns the lease as last read; GuardError when that is not seen within `timeout`."""
    quorum = Quorum(stores, now)
    started = now()
    first: Lease | None = None
    seen: Lease | None = None
    try:
        while True:
            read = quorum.read(round_seconds)
            seen = read.newest() if read.majority else None
            if seen is not None and seen.holder == holder:
                if first is None or seen.epoch != first.epoch:
                    first = seen
                elif seen.renewals > first.renewals:
                    return seen
            if now() - started > timeout:
                shown = seen.describe() if seen else "no majority answer"
                raise GuardError(f"the guard of {holder} renewed nothing within {timeout:g} s (newest: {shown})")
            sleep(POLL_SECONDS)
    finally:
        quorum.close()
