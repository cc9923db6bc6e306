"""region-failure-lease: the primary region is cut off under write load with the primary lease on; `scripts.promote`
waits the old lease out and fails over.

The variant of region-failure with `drtopo:fencing.mode lease` (the lab's short lease: lab/project.py LAB_LEASE,
switched on for this scenario and off after it): prod's guard runs on the lab's Kubernetes and, cut off with one of
the lease's three stores, fences prod's database when its lease runs out; promote takes the next epoch in dr's and
the witness's stores and waits until then. So prod's in-region client is refused before dr becomes writable:
`split_brain_writes` must be 0, not merely counted. The wait is a phase of the RTO of its own (`lease-expiry`).
"""

from __future__ import annotations

from scripts.drill.scenarios import phases
from scripts.drill.scenarios.region_failure import RegionFailure, RegionFigures, _Region
from scripts.drill.scenarios.scenario import ScenarioRun


class RegionFailureLease(RegionFailure):
    name = "region-failure-lease"
    order = 7  # a variant: not in `--scenario all`, named on its own
    rto_phases = (
        phases.health_checks(lambda how: f"{how}, Route53"),
        phases.decision,
        phases.lease_expiry,
        phases.action_after_lease,
        phases.application,
        phases.dns_ttl,
        phases.reconnect,
    )

    def play(self, run: ScenarioRun) -> None:
        with run.clock.step("the primary lease on: prod's guard renewing (python -m lab up --fencing lease)"):
            run.ctx.lab.set_fencing(True)
        try:
            super().play(run)
        finally:
            run.ctx.lab.set_fencing(False)

    def verify(self, run: ScenarioRun, region: _Region) -> None:
        super().verify(run, region)
        details = run.measured.details
        assert isinstance(details, RegionFigures)
        split = details.split_brain_writes
        run.checks.check(
            "no split-brain write",
            split == 0,
            f"prod acknowledged {split} write(s) after dr became writable "
            f"({details.inside_writes_acknowledged} in all from its in-region client)",
            split,
            0,
        )
        waited = details.lease_wait_seconds
        run.checks.check(
            "promote waited for the old lease",
            waited is not None and waited > 0,
            f"lease-expiry phase {waited} s (promote's lease_wait_seconds)",
            waited,
        )
