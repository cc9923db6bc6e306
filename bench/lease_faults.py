"""The fault matrix's rows with the primary lease on (bench/faults.py lists them): the lab switched to
`drtopo:fencing.mode lease` (lab/project.py LAB_LEASE: a 6 s lease, 2 s renewals), prod's guard running on the lab's
Kubernetes, a client inside prod writing to prod's own database (past every gate), then a fault.

What each row judges is the database and the stores as they are, not the guard's word: when the in-region client's
last write was acknowledged, whether a new session of prod may write, the lease record a majority of the three
stores holds (read from the emulator itself), Kubernetes' restart count of the guard's container, the replica count
of prod's application Deployment (read with the lab's admin kubectl).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from bench.switchover import DB_ONLY, DnsFollowingWriter, server_state, wait_acks, write_refused
from drtopo.application.deployment import application_namespace
from drtopo.database.loss_bound import BoundKind
from drtopo.settings import Fencing
from lab import kube_workloads
from lab.core import Lab

# How long the row waits for prod's application to be at 0 once promote returned (the guard scales it in the step
# that fences, a kubectl call or two later).
APP_DOWN_TIMEOUT_S = 30.0


class InsideWriter(DnsFollowingWriter):
    """A client inside `stack`'s region: inserts rows into its own database at its own port, whatever DNS says
    (it reconnects after a failed write, as an application's pool does)."""

    def __init__(self, lab: Lab, stack: str, rate: float = 50.0) -> None:
        super().__init__(lab, rate)
        self.name = f"inside-{stack}-writer"
        self.stack = stack

    def primary(self) -> str:
        return self.stack


@contextlib.contextmanager
def lease_on(lab: Lab) -> Iterator[Fencing]:
    """The lab with the lease on for one row (prod's guard running and renewing), off again afterwards."""
    lab.set_fencing(True)
    try:
        yield lab.prod.settings.fencing
    finally:
        lab.set_fencing(False)


@contextlib.contextmanager
def writing_inside(lab: Lab, stack: str = "prod") -> Iterator[InsideWriter]:
    writer = InsideWriter(lab, stack)
    writer.start()
    try:
        wait_acks(writer, 20)
        yield writer
    finally:
        writer.stop()


def _promote(lab: Lab, work: Path, cmd: Callable[..., Any], env: dict[str, str]) -> tuple[Any, dict[str, Any], float]:
    """promote of dr; returns the process, its report and the wall-clock time its promote step ended (the point
    of no return: dr writable)."""
    started = time.time()
    proc, report = cmd(lab, "promote", "dr", work, *DB_ONLY, env=env)
    steps = report.get("measured", {}).get("steps") or []
    step = next((s for s in steps if s.get("step") == "promote"), {})
    at = step.get("at_seconds")
    return proc, report, (started + float(at)) if at is not None else float("inf")


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next((c for c in report.get("checks", []) if c["name"] == name), {})


def app_replicas(lab: Lab, stack: str) -> int | None:
    """spec.replicas of `stack`'s application Deployment, read with the lab's admin kubectl (past every gate); None
    when there is no such Deployment."""
    settings = lab.region(stack).settings
    found = kube_workloads.get(lab.root, "deployment", settings.application.deployment, application_namespace(settings))
    return None if found is None else int(found.get("spec", {}).get("replicas", 1))


def wait_app_down(lab: Lab, stack: str, timeout: float) -> tuple[int | None, float]:
    """Until `stack`'s application is at 0 replicas or `timeout` seconds pass: (replicas last read, seconds)."""
    started = time.monotonic()
    while True:
        replicas = app_replicas(lab, stack)
        waited = time.monotonic() - started
        if replicas == 0 or waited > timeout:
            return replicas, waited
        time.sleep(0.2)


def primary_partitioned(lab: Lab, work: Path, cmd: Callable[..., Any], env: dict[str, str]) -> tuple[bool, str, int]:
    """prod cut off under its in-region client's writes, promote of dr: prod's guard, with one store of three, fences
    prod within leaseSeconds + renewSeconds of the cut and scales prod's application to 0 (its own cluster's API is
    in its region: the partition leaves it reachable); promote took the next epoch and waited the lease out, so prod
    acknowledged nothing after dr became writable. Returns (ok, detail, split-brain writes)."""
    with lease_on(lab) as fencing, writing_inside(lab) as writer:
        bound = fencing.worst_seconds
        app_before = app_replicas(lab, "prod")
        cut_at = time.time()
        lab.partition("prod")
        try:
            proc, report, ponr = _promote(lab, work, cmd, env)
            acks = writer.stop()
            # Read before the heal: promote cannot have reached prod's cluster (its API is behind prod's gate).
            app_after, app_waited = wait_app_down(lab, "prod", APP_DOWN_TIMEOUT_S)
        finally:
            lab.heal()
        inside = [a for a in acks if a.stack == "prod"]
        last = max((a.at for a in inside), default=cut_at)
        split = sum(1 for a in inside if a.at > ponr)
        refused = write_refused(lab, "prod")
        measured = report.get("measured", {})
        ok = (
            proc.returncode == 0
            and last - cut_at <= bound
            and split == 0
            and "read-only transaction" in refused
            and server_state(lab, "prod").get("default_read_only") == "on"
            and isinstance(measured.get("lease_wait_seconds"), int | float)
            and measured.get("replica_lag_bound") == BoundKind.LEASE
            and _check(report, "lease.guard").get("outcome") == "pass"
            and bool(app_before)
            and app_after == 0
        )
        detail = (
            f"promote exit {proc.returncode}; prod's last write {last - cut_at:.1f} s after the cut"
            f" (bound {bound:g} s), {split} after dr was writable; lease wait {measured.get('lease_wait_seconds')} s,"
            f" bound {str(measured.get('replica_lag_bound'))[:20]}; prod now: {refused[:40] or 'WRITABLE'};"
            f" prod's application {app_before} -> {app_after} replicas (by its guard, {app_waited:.1f} s after promote)"
        )
        return ok, detail, split


def region_down_alone(name: str) -> Callable[[Lab], tuple[bool, str]]:
    """One region of the lease's three down (the standby's, or the witness's) for twice the lease: prod's guard
    keeps a majority (its own store and the other), renews all along, and prod keeps acknowledging every write."""

    def run(lab: Lab) -> tuple[bool, str]:
        with lease_on(lab) as fencing, writing_inside(lab) as writer:
            before = lab.prod.guard.lease()
            lab.partition(name)
            try:
                # Watched for two leases: the row fails at the first refused write or fence it sees.
                ends = time.monotonic() + 2 * fencing.worst_seconds
                while time.monotonic() < ends and writer.errors == 0:
                    time.sleep(0.2)
                acks_during = len(writer.acks)
            finally:
                lab.heal(name)
            after = lab.prod.guard.lease()
            errors = writer.errors
        state = server_state(lab, "prod")
        renewed = before is not None and after is not None and after.epoch == before.epoch
        renewed = renewed and after is not None and before is not None and after.renewals > before.renewals
        ok = errors == 0 and renewed and state.get("default_read_only") == "off" and lab.prod.guard.restarts() == 0
        detail = (
            f"{name} cut for {2 * fencing.worst_seconds:g} s: {acks_during} writes, {errors} refused; lease "
            f"{before.describe() if before else None} renewals {before.renewals if before else '-'} -> "
            f"{after.renewals if after else '-'}; prod {state}"
        )
        return ok, detail

    return run


def old_primary_restarted(lab: Lab, work: Path, cmd: Callable[..., Any], env: dict[str, str]) -> tuple[bool, str]:
    """prod's database SIGKILLed, promote of dr (unplanned: it takes the next epoch and waits the lease out), then
    prod's database started again as it was, writable, and no command run: prod's guard, left running by promote,
    saw the newer epoch and fences prod within leaseSeconds + renewSeconds of its start."""
    with lease_on(lab) as fencing:
        bound = fencing.worst_seconds
        killed = lab.prod.postgres.kill()
        proc, report, _ = _promote(lab, work, cmd, env)
        lab.prod.postgres.start()
        started = time.monotonic()
        refused = ""
        while not refused and time.monotonic() < started + bound + 10:
            with contextlib.suppress(psycopg.OperationalError):  # still starting
                refused = write_refused(lab, "prod")
            if not refused:
                time.sleep(0.1)
        took = time.monotonic() - started
        old_guard = _check(report, "lease.old-guard")
        ok = (
            proc.returncode == 0
            and "read-only transaction" in refused
            and took <= bound
            and old_guard.get("outcome") == "skip"
            and "left running" in str(old_guard.get("detail"))
            and server_state(lab, "dr").get("in_recovery") is False
        )
        said = "" if proc.returncode == 0 else f" ({proc.stderr.strip().splitlines()[-1:]})"
        detail = (
            f"pid {killed} gone, promote exit {proc.returncode}{said}, old guard: {str(old_guard.get('detail'))[:50]}; "
            f"prod restarted writable, refused writes after {took:.1f} s (bound {bound:g} s)"
        )
        return ok, detail


def guard_killed(lab: Lab) -> tuple[bool, str]:
    """The guard's container SIGKILLed under prod's in-region writes: Kubernetes restarts it, the new guard adopts
    its stack's epoch and renews it, and prod never refuses a write (the lease held throughout)."""
    with lease_on(lab) as fencing, writing_inside(lab) as writer:
        before = lab.prod.guard.lease()
        restarts = lab.prod.guard.restarts()
        pid = lab.prod.guard.kill()
        deadline = time.monotonic() + 60
        while lab.prod.guard.restarts() <= restarts and time.monotonic() < deadline:
            time.sleep(0.2)
        after = lab.prod.guard.wait_renewing(60)
        ends = time.monotonic() + fencing.worst_seconds  # then watched for one more lease
        while time.monotonic() < ends and writer.errors == 0:
            time.sleep(0.2)
        errors, restarted = writer.errors, lab.prod.guard.restarts()
    state = server_state(lab, "prod")
    ok = (
        restarted > restarts
        and before is not None
        and after.epoch == before.epoch
        and after.holder == "prod"
        and errors == 0
        and state.get("default_read_only") == "off"
    )
    detail = (
        f"pid {pid} killed, restarts {restarts} -> {restarted}; lease {before.describe() if before else None} -> "
        f"{after.describe()} ({after.renewals} renewals); {errors} writes refused; prod {state}"
    )
    return ok, detail
