"""region-failure-kill: the primary region dies under write load; `scripts.promote` fails over to the standby region.

The variant of region-failure that kills instead of cutting off: prod's database is SIGKILLed and its Kafka and
service stopped (its gates stay open). The client keeps writing through the failover record, so RTO is measured as
the client sees it: from the failure until a write is acknowledged by the standby region. RPO is the window of
acknowledged writes that the promoted database does not hold; nothing in prod can take a write after the kill.
"""

from __future__ import annotations

import time

from drtopo.database.connect import connect
from scripts.drill.scenarios.context import data_loss, exit_detail, surviving
from scripts.drill.scenarios.region_failure import Promotion, RegionFailure, RegionFigures, _Region
from scripts.drill.scenarios.scenario import ScenarioRun


class RegionFailureKill(RegionFailure):
    name = "region-failure-kill"
    order = 6  # a variant: not in `--scenario all`, named on its own

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

    def verify(self, run: ScenarioRun, region: _Region) -> None:
        ctx, clock, m = run.ctx, run.clock, run.measured
        failure_at = region.failure_at
        stats = region.writer.stop()
        promoted = region.promoted or Promotion(None, None, None)
        first = stats.first_ack_sent_after(failure_at)
        with clock.step("count acknowledged rows on the promoted database"), connect(ctx.outputs("dr")) as conn:
            present = surviving(conn, [a.key for a in stats.acks])
        lost_before, rpo = data_loss(stats.acks, present, before=failure_at)
        lost_total, _ = data_loss(stats.acks, present, before=time.time())
        m.rto_seconds = None if first is None else round(first.at - failure_at, 3)
        m.rpo_seconds, m.rows_lost = round(rpo, 3), lost_total
        m.details = RegionFigures(rows_lost_before_failure=lost_before, dns_path=promoted.dns_path)
        m.rows_acknowledged, m.failed_requests = len(stats.acks), stats.errors
        run.checks.check(
            "served from the standby region",
            first is not None and first.target == ctx.outputs("dr").service_url,
            f"first write after the failure went to {first.target if first else 'nowhere'}",
        )
        validation = ctx.json_dir / f"{self.name}-validate.json"
        with clock.step("scripts.validate --stack dr"):
            code = ctx.run(
                "validate",
                ["--stack", "dr", "--outputs", str(ctx.outputs_path("dr")), "--json", str(validation)],
            )
        run.checks.check(
            "post-recovery validation", code == 0, f"scripts.validate {exit_detail(code, validation)}", code, 0
        )
