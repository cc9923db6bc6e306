"""region-failure: the primary region dies under write load; `scripts.promote` fails over to the standby region.

The prod database is SIGKILLed and prod's Kafka and service are stopped. The client keeps writing through the
failover record, so RTO is measured as the client sees it: from the failure until a write is acknowledged by the
standby region. RPO is the window of acknowledged writes that the promoted database does not hold.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from drtopo.database.connect import connect
from scripts.drill.loadgen import RowWriter
from scripts.drill.measured import Figures
from scripts.drill.scenarios import phases
from scripts.drill.scenarios.context import data_loss, patience, surviving
from scripts.drill.scenarios.scenario import Scenario, ScenarioRun


@dataclass
class RegionFigures(Figures):
    rows_lost_before_failure: int  # acknowledged before the failure and missing on the promoted database


@dataclass
class _Region:
    writer: RowWriter
    failure_at: float


class RegionFailure(Scenario[_Region]):
    name = "region-failure"
    objectives_key = "region_failure"
    order = 5  # leaves the most to rebuild
    writes_rows = True
    rto_phases = (
        phases.health_checks(lambda how: f"{how}, Route53"),
        phases.decision,
        phases.action,
        phases.dns_ttl,
        phases.reconnect,
    )

    def inject(self, run: ScenarioRun) -> _Region:
        ctx, clock = run.ctx, run.clock
        writer = ctx.row_writer(ctx.active_service_url, prefix="region")
        with clock.step("steady load through the failover record"):
            writer.start()
            time.sleep(3)
        with clock.step("primary region dies: database SIGKILL, Kafka and service stopped"):
            ctx.lab.prod.postgres.kill()
            # Once the database is gone no write can be acknowledged in prod: a response already on its way is not
            # a recovery, so the clock starts here.
            failure_at = run.fault_injected()
            ctx.lab.prod.service.stop()
            ctx.lab.prod.kafka.stop()
        return _Region(writer=writer, failure_at=failure_at)

    def recover(self, run: ScenarioRun, region: _Region) -> None:
        ctx, clock, m = run.ctx, run.clock, run.measured
        report = ctx.json_dir / "region-failure-promote.json"
        promote_started = clock.elapsed()
        with clock.step("scripts.promote --stack dr"):
            code = ctx.run(
                "promote", ["--stack", "dr", "--outputs", str(ctx.outputs_path("dr")), "--json", str(report)]
            )
        # The action of the client-visible RTO: from the failure until promote flipped the failover record (the drill
        # decides at once); what promote does after the flip overlaps the clients' reconnect.
        flipped = (
            json.loads(report.read_text()).get("measured", {}).get("seconds_to_dns_flipped")
            if report.exists()
            else None
        )
        if flipped is not None and m.failure_at_seconds is not None:
            m.action = "scripts.promote --stack dr until the failover record flipped (fence, promote, DNS)"
            m.action_seconds = round(promote_started + flipped - m.failure_at_seconds, 3)
        run.checks.check("promote succeeded", code == 0, f"exit code {code}", code, 0)
        with clock.step("wait for the first write acknowledged by the standby region"):
            deadline = time.monotonic() + patience(run.result.objective_rto_seconds)
            while region.writer.stats.first_ack_sent_after(region.failure_at) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(1)

    def verify(self, run: ScenarioRun, region: _Region) -> None:
        ctx, clock, m = run.ctx, run.clock, run.measured
        failure_at = region.failure_at
        stats = region.writer.stop()
        first = stats.first_ack_sent_after(failure_at)
        with clock.step("count acknowledged rows on the promoted database"), connect(ctx.outputs("dr")) as conn:
            present = surviving(conn, [a.key for a in stats.acks])
        lost_before, rpo = data_loss(stats.acks, present, before=failure_at)
        lost_total, _ = data_loss(stats.acks, present, before=time.time())
        m.rto_seconds = None if first is None else round(first.at - failure_at, 3)
        m.rpo_seconds, m.rows_lost = round(rpo, 3), lost_total
        m.details = RegionFigures(rows_lost_before_failure=lost_before)
        m.rows_acknowledged, m.failed_requests = len(stats.acks), stats.errors
        run.checks.check(
            "served from the standby region",
            first is not None and first.target == ctx.outputs("dr").service_url,
            f"first write after the failure went to {first.target if first else 'nowhere'}",
        )
        validation = ctx.json_dir / "region-failure-validate.json"
        with clock.step("scripts.validate --stack dr"):
            code = ctx.run(
                "validate",
                ["--stack", "dr", "--outputs", str(ctx.outputs_path("dr")), "--json", str(validation)],
            )
        run.checks.check("post-recovery validation", code == 0, f"scripts.validate exit code {code}", code, 0)
