"""single-pod-failure: the service's pod is killed; the drill restarts it as Kubernetes would and times recovery.

RTO is the time from the kill until a client's write is acknowledged again; RPO counts acknowledged rows missing.
"""

from __future__ import annotations

import time

from drtopo.database.connect import connect
from scripts.drill.report import ScenarioResult
from scripts.drill.scenarios.context import DrillContext, data_loss, patience, surviving, wait_healthy

NAME = "single-pod-failure"


def run(ctx: DrillContext, result: ScenarioResult) -> None:
    clock = ctx.clock()
    stack = "prod"
    url = ctx.outputs(stack).service_url
    writer = ctx.row_writer(lambda: url, prefix="pod")
    with clock.step("steady load on the service"):
        writer.start()
        time.sleep(2)
    with clock.step("kill the service pod (SIGKILL)"):
        ctx.lab.kill_service(stack)
    # Taken once the process is gone: a response already on its way before the kill is no recovery.
    failure_at = time.time()
    result.measured["failure_at_seconds"] = round(clock.elapsed(), 3)
    with clock.step("restart the pod and wait until healthy"):
        ctx.lab.start_service(stack)
        wait_healthy(url, timeout=patience(result.objective_rto_seconds))
    with clock.step("wait for the first acknowledged write"):
        deadline = time.monotonic() + patience(result.objective_rto_seconds)
        while writer.stats.first_ack_after(failure_at) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1)
    stats = writer.stop()
    first = stats.first_ack_after(failure_at)
    with clock.step("count acknowledged rows in the database"), connect(ctx.outputs(stack)) as conn:
        present = surviving(conn, [a.key for a in stats.acks])
    lost, rpo = data_loss(stats.acks, present, before=time.time())
    result.measured.update(
        rto_seconds=None if first is None else round(first.at - failure_at, 3),
        rpo_seconds=round(rpo, 3),
        rows_lost=lost,
        rows_acknowledged=len(stats.acks),
        failed_requests=stats.errors,
    )
    result.checks.check("writes resumed", first is not None, "a write was acknowledged after the restart")
    result.steps = clock.steps
