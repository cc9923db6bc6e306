"""region-failure: the primary region is cut off under write load; `scripts.promote` fails over to the standby region.

`python -m lab partition prod`: prod's gates drop every byte both ways, so nothing outside reaches prod (its
database, Kafka, service, AWS endpoint us-east-1, where Route53's control plane lives, and its Kubernetes API) while
everything inside it keeps running. Outside clients keep writing through the failover record (the lab's stand-in
for Route53's data plane, lab/resolver.py), so RTO is measured as they see it: from the cut until a write is
acknowledged by the standby region. A client inside prod keeps writing to prod's own service, past the gate: what
prod acknowledged after the promotion's point of no return are the split-brain writes, lost to the promoted side.
RPO is the window of acknowledged writes up to that point that the promoted database does not hold. Then the
partition heals and `scripts.failback` takes prod back: before it rebuilds prod it re-applies to dr every row prod
took after the fork (the lease off, drtopo:fencing.mode as shipped), so the scenario's `rows_lost` counts the
acknowledged writes missing from prod at the end, and reports what failback found and re-applied. The
`region-failure-kill` variant keeps the region that dies instead (region_failure_kill.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drtopo.database.connect import connect
from scripts.drill.loadgen import Ack, RowWriter
from scripts.drill.measured import Figures
from scripts.drill.scenarios import phases
from scripts.drill.scenarios.context import data_loss, exit_detail, patience, surviving
from scripts.drill.scenarios.scenario import Scenario, ScenarioRun

# The in-region client's share of the load's write rate (the outside clients carry the load itself).
INSIDE_SHARE = 0.25


@dataclass
class RegionFigures(Figures):
    rows_lost_before_failure: int  # acknowledged before the failure and missing on the promoted database
    dns_path: str | None = None  # how promote moved DNS: "data plane" (the takeover signal) or "fallback"
    # Writes the old primary acknowledged after the promotion's point of no return (its in-region client's).
    split_brain_writes: int | None = None
    inside_writes_acknowledged: int | None = None
    # What failback found on prod after the heal that dr lacked, re-applied, and left listed (conflicts, deletes).
    diverged_found: int | None = None
    diverged_reapplied: int | None = None
    diverged_listed: int | None = None
    rows_lost_at_promotion: int | None = None  # acknowledged, missing on dr right after the promotion
    # With the primary lease: how long promote waited for the old primary's lease to run out (an RTO phase).
    lease_wait_seconds: float | None = None


@dataclass
class Promotion:
    """What promote's JSON report says of the run the drill timed."""

    dns_path: str | None
    flipped_seconds: float | None  # since promote started, until DNS moved
    point_of_no_return: float | None  # wall-clock time promote's `promote` step ended (dr writable)
    # promote's application step: scale-up, rollout and health (`measured.application`), and the counts it moved.
    application_seconds: float | None = None
    application: str | None = None
    lease_wait_seconds: float | None = None  # the lease's expiry promote waited for (lease on, old primary silent)


def promotion(report: Path, started_at: float) -> Promotion:
    """Read promote's report (`measured.steps`, `dns_path`, `seconds_to_dns_flipped`, `application`); started_at is
    the wall-clock time promote was started."""
    measured: dict[str, Any] = json.loads(report.read_text()).get("measured", {}) if report.exists() else {}
    step = next((s for s in measured.get("steps") or [] if s.get("step") == "promote"), None)
    ponr = None if step is None or step.get("at_seconds") is None else started_at + float(step["at_seconds"])
    app = measured.get("application") or {}
    mode = None
    if app:
        before = app.get("before")
        kind = "pilot light" if not before else f"warm standby ({before} running)"
        mode = f"{kind}, {before} -> {app.get('replicas')} replicas"
    return Promotion(
        measured.get("dns_path"),
        measured.get("seconds_to_dns_flipped"),
        ponr,
        app.get("seconds"),
        mode,
        measured.get("lease_wait_seconds"),
    )


def split_brain(inside: list[Ack], point_of_no_return: float | None) -> int | None:
    """The in-region client's writes prod acknowledged after the point of no return (None: no such point)."""
    if point_of_no_return is None:
        return None
    return sum(1 for a in inside if a.at > point_of_no_return)


@dataclass
class _Region:
    writer: RowWriter
    failure_at: float
    inside: RowWriter | None = None
    promoted: Promotion | None = None


class RegionFailure(Scenario[_Region]):
    name = "region-failure"
    objectives_key = "region_failure"
    order = 5  # leaves the most to rebuild
    writes_rows = True
    rto_phases = (
        phases.health_checks(lambda how: f"{how}, Route53"),
        phases.decision,
        phases.action,
        phases.application,
        phases.dns_ttl,
        phases.reconnect,
    )

    def inject(self, run: ScenarioRun) -> _Region:
        ctx, clock = run.ctx, run.clock
        writer = ctx.row_writer(ctx.active_service_url, prefix="region")
        inside_url = ctx.lab.prod.service.url  # prod's own service, not its gate
        inside = RowWriter(lambda: inside_url, rate=max(ctx.load.write_rate * INSIDE_SHARE, 1.0), prefix="inside")
        with clock.step("steady load through the failover record, and inside prod"):
            writer.start()
            inside.start()
            time.sleep(3)
        with clock.step("primary region cut off: python -m lab partition prod"):
            ctx.lab.partition("prod")
            failure_at = run.fault_injected()
        return _Region(writer=writer, failure_at=failure_at, inside=inside)

    def recover(self, run: ScenarioRun, region: _Region) -> None:
        ctx, clock, m = run.ctx, run.clock, run.measured
        report = ctx.json_dir / f"{self.name}-promote.json"
        promote_started, started_at = clock.elapsed(), time.time()
        with clock.step("scripts.promote --stack dr"):
            code = ctx.run(
                "promote", ["--stack", "dr", "--outputs", str(ctx.outputs_path("dr")), "--json", str(report)]
            )
        region.promoted = promotion(report, started_at)
        # The action of the client-visible RTO: from the failure until promote moved DNS (the drill decides at
        # once); what promote does after it overlaps the clients' reconnect.
        flipped = region.promoted.flipped_seconds
        if flipped is not None and m.failure_at_seconds is not None:
            m.action = "scripts.promote --stack dr until DNS moved (fence, promote, application, DNS)"
            m.action_seconds = round(promote_started + flipped - m.failure_at_seconds, 3)
        m.application, m.application_seconds = region.promoted.application, region.promoted.application_seconds
        run.checks.check("promote succeeded", code == 0, exit_detail(code, report), code, 0)
        with clock.step("wait for the first write acknowledged by the standby region"):
            deadline = time.monotonic() + patience(run.result.objective_rto_seconds)
            while region.writer.stats.first_ack_sent_after(region.failure_at) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(1)

    def verify(self, run: ScenarioRun, region: _Region) -> None:
        ctx, clock, m = run.ctx, run.clock, run.measured
        failure_at = region.failure_at
        stats = region.writer.stop()
        inside = region.inside.stop().acks if region.inside is not None else []
        promoted = region.promoted or Promotion(None, None, None)
        first = stats.first_ack_sent_after(failure_at)
        acks = sorted([*stats.acks, *inside], key=lambda a: a.at)
        with clock.step("count acknowledged rows on the promoted database"), connect(ctx.outputs("dr")) as conn:
            present = surviving(conn, [a.key for a in acks])
        lost_before, _ = data_loss(acks, present, before=failure_at)
        # RPO: the acknowledged writes up to the point of no return the promoted side does not hold (what prod took
        # after it is split brain, counted apart).
        _, rpo = data_loss(acks, present, before=promoted.point_of_no_return or time.time())
        lost_total, _ = data_loss(acks, present, before=time.time())
        m.rto_seconds = None if first is None else round(first.at - failure_at, 3)
        m.rpo_seconds, m.rows_lost = round(rpo, 3), lost_total
        figures = RegionFigures(
            rows_lost_before_failure=lost_before,
            dns_path=promoted.dns_path,
            split_brain_writes=split_brain(inside, promoted.point_of_no_return),
            inside_writes_acknowledged=len(inside),
            lease_wait_seconds=promoted.lease_wait_seconds,
        )
        m.details = figures
        m.rows_acknowledged, m.failed_requests = len(stats.acks), stats.errors
        run.checks.check(
            "served from the standby region",
            first is not None and first.target == ctx.outputs("dr").service_url,
            f"first write after the failure went to {first.target if first else 'nowhere'}",
        )
        run.checks.check(
            "DNS moved through the data plane",
            promoted.dns_path == "data plane",
            f"promote's DNS path: {promoted.dns_path}",
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
        self.take_back(run, acks, figures)

    def take_back(self, run: ScenarioRun, acks: list[Ack], figures: RegionFigures) -> None:
        """Heal, fail back to prod (which re-applies what prod took after the fork before rebuilding it), and count
        the acknowledged writes missing from prod at the end: those are lost."""
        ctx, clock, m = run.ctx, run.clock, run.measured
        with clock.step("partition healed: python -m lab heal"):
            ctx.lab.heal()
        report = ctx.json_dir / f"{self.name}-failback.json"
        # The consumer group's way back is test_failback's; here the rows are.
        argv = ["--stack", "prod", "--outputs", str(ctx.outputs_path("prod")), "--json", str(report)]
        with clock.step("scripts.failback --stack prod: re-apply what prod took after the fork, then switch back"):
            code = ctx.run("failback", [*argv, "--skip-consumer-group"])
        run.checks.check("failback succeeded", code == 0, exit_detail(code, report), code, 0)
        measured = json.loads(report.read_text()).get("measured", {}) if report.exists() else {}
        found = measured.get("diverged") or {}
        figures.diverged_found = found.get("found")
        figures.diverged_reapplied = found.get("reapplied")
        figures.diverged_listed = found.get("listed")
        with clock.step("count acknowledged rows on prod after the failback"), connect(ctx.outputs("prod")) as conn:
            kept = surviving(conn, [a.key for a in acks])
        figures.rows_lost_at_promotion = m.rows_lost
        m.rows_lost = len(acks) - len(kept)
        run.checks.check(
            "every acknowledged write kept (what prod took after the fork re-applied by failback)",
            m.rows_lost == 0,
            f"{len(kept)} of {len(acks)} acknowledged rows on prod; failback found {figures.diverged_found}, "
            f"re-applied {figures.diverged_reapplied}, listed {figures.diverged_listed} "
            f"(where: {', '.join(found.get('where') or []) or 'nothing listed'})",
            m.rows_lost,
            0,
        )
