"""single-pod-failure: the service's pod fails twice under load and Kubernetes alone brings it back each time.

First its container's process is killed (SIGKILL: the kubelet restarts the container in the same pod), then the pod
itself is deleted (its ReplicaSet creates a new pod). The drill does nothing to recover. RTO is, for each failure,
the time from the failure (the process killed; the old pod gone) until a client's write is acknowledged again (the
larger one is reported); RPO counts
acknowledged rows missing. The report shows what Kubernetes did: the restart count and the pod's UID before and after.
"""

from __future__ import annotations

import time
from typing import Any

from drtopo.database.connect import connect
from scripts.drill.report import ScenarioResult
from scripts.drill.scenarios.context import DrillContext, data_loss, patience, surviving, wait_healthy

NAME = "single-pod-failure"
STATUS_WAIT_S = 30.0


def _restarts(pod: dict[str, Any] | None) -> int:
    statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
    return sum(s.get("restartCount", 0) for s in statuses)


def _uid(pod: dict[str, Any] | None) -> str | None:
    return None if pod is None else str(pod["metadata"]["uid"])


def run(ctx: DrillContext, result: ScenarioResult) -> None:
    clock = ctx.clock()
    stack = "prod"
    url = ctx.outputs(stack).service_url
    timeout = patience(result.objective_rto_seconds)
    writer = ctx.row_writer(lambda: url, prefix="pod")

    def recovered(failure_at: float) -> float | None:
        """The outage a client saw: the longest time without an acknowledged write from the failure until a write
        is acknowledged after the service answers its health check again (waiting at most the patience). Not "the
        first acknowledgement after the failure": a response already on the wire when the process died arrives
        after the kill, and a deleted pod keeps serving while it terminates."""
        wait_healthy(url, timeout=timeout)
        healthy_at = time.time()
        deadline = time.monotonic() + timeout
        while writer.stats.first_ack_after(healthy_at) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return writer.stats.longest_gap(failure_at, healthy_at)

    before = ctx.lab.service_pod(stack)
    with clock.step("steady load on the service"):
        writer.start()
        time.sleep(2)
    killed_at = time.time()
    with clock.step("kill the service container's process (SIGKILL)"):
        ctx.lab.kill_service(stack)
    result.measured["failure_at_seconds"] = round(clock.elapsed(), 3)
    with clock.step("Kubernetes restarts the container; wait for the first acknowledged write"):
        rto_kill = recovered(killed_at)
    # The kubelet reports the restart to the API server a moment after the new container serves.
    deadline = time.monotonic() + STATUS_WAIT_S
    restarted = ctx.lab.service_pod(stack)
    while _restarts(restarted) <= _restarts(before) and time.monotonic() < deadline:
        time.sleep(0.2)
        restarted = ctx.lab.service_pod(stack)
    deleted_at = time.time()
    with clock.step("delete the service pod (until its container has stopped)"):
        name = ctx.lab.delete_service_pod(stack)
        # The old pod serves while it terminates; the outage is measured from the acknowledgements, whenever it falls.
        ctx.lab.wait_pod_gone(stack, name, timeout=STATUS_WAIT_S)
    with clock.step("Kubernetes replaces the pod; wait for the first acknowledged write"):
        rto_delete = recovered(deleted_at)
        time.sleep(1)
    replaced = ctx.lab.service_pod(stack)
    stats = writer.stop()
    with clock.step("count acknowledged rows in the database"), connect(ctx.outputs(stack)) as conn:
        present = surviving(conn, [a.key for a in stats.acks])
    lost, rpo = data_loss(stats.acks, present, before=time.time())
    rtos = [r for r in (rto_kill, rto_delete) if r is not None]
    result.measured.update(
        rto_seconds=round(max(rtos), 3) if len(rtos) == 2 else None,
        rto_container_kill_seconds=None if rto_kill is None else round(rto_kill, 3),
        rto_pod_delete_seconds=None if rto_delete is None else round(rto_delete, 3),
        rpo_seconds=round(rpo, 3),
        rows_lost=lost,
        rows_acknowledged=len(stats.acks),
        failed_requests=stats.errors,
        pod_uid_before=_uid(before),
        pod_uid_after=_uid(replaced),
        restarts_before=_restarts(before),
        restarts_after_kill=_restarts(restarted),
    )
    result.checks.check(
        "container restarted by Kubernetes",
        _uid(restarted) == _uid(before) and _restarts(restarted) == _restarts(before) + 1,
        f"pod {_uid(before)}: restartCount {_restarts(before)} -> {_restarts(restarted)}",
        _restarts(restarted),
        _restarts(before) + 1,
    )
    result.checks.check(
        "pod replaced by Kubernetes",
        replaced is not None and _uid(replaced) != _uid(restarted),
        f"pod UID {_uid(restarted)} -> {_uid(replaced)}",
    )
    result.checks.check("writes resumed after the kill", rto_kill is not None, "a write was acknowledged")
    result.checks.check("writes resumed after the deletion", rto_delete is not None, "a write was acknowledged")
    result.steps = clock.steps
