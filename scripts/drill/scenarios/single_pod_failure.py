"""single-pod-failure: the service's pod fails twice under load and Kubernetes alone brings it back each time.

First its container's process is killed (SIGKILL: the kubelet restarts the container in the same pod), then the pod
itself is deleted (its ReplicaSet creates a new pod). The drill does nothing to recover. RTO is, for each failure,
the time from the failure (the process killed; the old pod gone) until a client's write is acknowledged again (the
larger one is reported); RPO counts
acknowledged rows missing. The report shows what Kubernetes did: the restart count and the pod's UID before and after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from drtopo.database.connect import connect
from scripts.drill.loadgen import RowWriter
from scripts.drill.measured import Figures
from scripts.drill.scenarios import phases
from scripts.drill.scenarios.context import data_loss, patience, surviving, wait_healthy
from scripts.drill.scenarios.scenario import Scenario, ScenarioRun

STACK = "prod"
STATUS_WAIT_S = 30.0


def _restarts(pod: dict[str, Any] | None) -> int:
    statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
    return sum(s.get("restartCount", 0) for s in statuses)


def _uid(pod: dict[str, Any] | None) -> str | None:
    return None if pod is None else str(pod["metadata"]["uid"])


@dataclass
class PodFigures(Figures):
    """What Kubernetes did: the outage of each failure, the pod's UID and its restart count before and after."""

    rto_container_kill_seconds: float | None
    rto_pod_delete_seconds: float | None
    pod_uid_before: str | None
    pod_uid_after: str | None
    restarts_before: int
    restarts_after_kill: int


@dataclass
class _Pods:
    writer: RowWriter
    url: str
    killed_at: float
    before: dict[str, Any] | None  # the service's pod before the kill
    restarted: dict[str, Any] | None = None  # after Kubernetes restarted its container
    replaced: dict[str, Any] | None = None  # the pod Kubernetes created after the deletion
    rto_kill: float | None = None
    rto_delete: float | None = None


class SinglePodFailure(Scenario[_Pods]):
    name = "single-pod-failure"
    objectives_key = "single_pod_failure"
    order = 1
    writes_rows = True
    rto_phases = (
        phases.instant("detection", f"{phases.MEASURED} (in the action): the kubelet sees the container exit at once"),
        phases.instant("decision", "none: Kubernetes restarts the pod without anyone deciding"),
        phases.action,
        phases.reconnect,
    )

    def inject(self, run: ScenarioRun) -> _Pods:
        ctx, clock = run.ctx, run.clock
        url = ctx.outputs(STACK).service_url
        writer = ctx.row_writer(lambda: url, prefix="pod")
        service = ctx.lab.region(STACK).service
        before = service.pod()
        with clock.step("steady load on the service"):
            writer.start()
            time.sleep(2)
        killed_at = time.time()
        with clock.step("kill the service container's process (SIGKILL)"):
            service.kill()
        run.fault_injected()
        return _Pods(writer=writer, url=url, killed_at=killed_at, before=before)

    def _recovered(self, run: ScenarioRun, pods: _Pods, failure_at: float) -> float | None:
        """The outage a client saw: the longest time without an acknowledged write from the failure until a write
        is acknowledged after the service answers its health check again (waiting at most the patience). Not "the
        first acknowledgement after the failure": a response already on the wire when the process died arrives
        after the kill, and a deleted pod keeps serving while it terminates."""
        timeout = patience(run.result.objective_rto_seconds)
        wait_healthy(pods.url, timeout=timeout)
        healthy_at = time.time()
        deadline = time.monotonic() + timeout
        while pods.writer.stats.first_ack_after(healthy_at) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return pods.writer.stats.longest_gap(failure_at, healthy_at)

    def recover(self, run: ScenarioRun, pods: _Pods) -> None:
        """Kubernetes alone: it restarts the killed container; then the pod is deleted and it replaces the pod."""
        service, clock = run.ctx.lab.region(STACK).service, run.clock
        with clock.step("Kubernetes restarts the container; wait for the first acknowledged write"):
            pods.rto_kill = self._recovered(run, pods, pods.killed_at)
        # The kubelet reports the restart to the API server a moment after the new container serves.
        deadline = time.monotonic() + STATUS_WAIT_S
        pods.restarted = service.pod()
        while _restarts(pods.restarted) <= _restarts(pods.before) and time.monotonic() < deadline:
            time.sleep(0.2)
            pods.restarted = service.pod()
        deleted_at = time.time()
        with clock.step("delete the service pod (until its container has stopped)"):
            name = service.delete_pod()
            # The old pod serves while it terminates; the outage is measured from the acknowledgements, whenever it
            # falls.
            service.wait_pod_gone(name, timeout=STATUS_WAIT_S)
        with clock.step("Kubernetes replaces the pod; wait for the first acknowledged write"):
            pods.rto_delete = self._recovered(run, pods, deleted_at)
            time.sleep(1)
        pods.replaced = service.pod()

    def verify(self, run: ScenarioRun, pods: _Pods) -> None:
        ctx, clock, m = run.ctx, run.clock, run.measured
        before, restarted, replaced = pods.before, pods.restarted, pods.replaced
        stats = pods.writer.stop()
        with clock.step("count acknowledged rows in the database"), connect(ctx.outputs(STACK)) as conn:
            present = surviving(conn, [a.key for a in stats.acks])
        lost, rpo = data_loss(stats.acks, present, before=time.time())
        rtos = [r for r in (pods.rto_kill, pods.rto_delete) if r is not None]
        m.rto_seconds = round(max(rtos), 3) if len(rtos) == 2 else None
        m.rpo_seconds, m.rows_lost = round(rpo, 3), lost
        m.rows_acknowledged, m.failed_requests = len(stats.acks), stats.errors
        m.details = PodFigures(
            rto_container_kill_seconds=None if pods.rto_kill is None else round(pods.rto_kill, 3),
            rto_pod_delete_seconds=None if pods.rto_delete is None else round(pods.rto_delete, 3),
            pod_uid_before=_uid(before),
            pod_uid_after=_uid(replaced),
            restarts_before=_restarts(before),
            restarts_after_kill=_restarts(restarted),
        )
        run.checks.check(
            "container restarted by Kubernetes",
            _uid(restarted) == _uid(before) and _restarts(restarted) == _restarts(before) + 1,
            f"pod {_uid(before)}: restartCount {_restarts(before)} -> {_restarts(restarted)}",
            _restarts(restarted),
            _restarts(before) + 1,
        )
        run.checks.check(
            "pod replaced by Kubernetes",
            replaced is not None and _uid(replaced) != _uid(restarted),
            f"pod UID {_uid(restarted)} -> {_uid(replaced)}",
        )
        run.checks.check("writes resumed after the kill", pods.rto_kill is not None, "a write was acknowledged")
        run.checks.check("writes resumed after the deletion", pods.rto_delete is not None, "a write was acknowledged")
