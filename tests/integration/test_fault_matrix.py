"""The fault matrix (bench/faults.py) on the lab: every injected fault ends in its expected outcome.

Also runnable on its own, with a table: `python -m bench.faults`. The first two tests need no lab: the rows are
listed one by one, so these count them and hold them against the plans (a step removed from a plan, or a row removed
from the matrix, fails here).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import FAULTS, Fault, run_fault
from drtopo.database.pitr.cutover import CUTOVER_MUTATING, CUTOVER_PLAN
from drtopo.failover.plan import MUTATING, PlannedStep, Step, failback_plan, promote_plan
from lab.core import Lab

pytestmark = pytest.mark.lab

# 1 SIGKILL row, 10 promote crash rows, 13 failback crash rows, 7 cutover crash rows, 5 lease rows, 23 others.
EXPECTED_ROWS = 59
# A mutating step whose fault is not a crash row (the crash rows run with --skip-consumer-group), and its row.
COVERED_ELSEWHERE = {Step.CONSUMER_GROUP: "consumer group with live members"}
PLANS: dict[str, list[list[PlannedStep]]] = {
    "promote": [promote_plan("dr", "prod", True), promote_plan("dr", "prod", False)],
    "failback": [failback_plan("prod", "dr")],
}


def test_the_matrix_lists_each_row_once() -> None:
    assert len(FAULTS) == EXPECTED_ROWS
    assert len({f.name for f in FAULTS}) == len(FAULTS)


@pytest.mark.parametrize("command", sorted(PLANS))
def test_every_mutating_step_has_its_crash_row(command: str) -> None:
    names = {f.name for f in FAULTS}
    in_plans = {s.name for plan in PLANS[command] for s in plan}
    for step in sorted(in_plans & MUTATING):
        row = COVERED_ELSEWHERE.get(step, f"crash after {command} step {step}")
        assert row in names, f"{command} step {step} changes state and has no row {row!r} in the fault matrix"
    prefix = f"crash after {command} step "
    for name in names:
        if name.startswith(prefix):
            assert name.removeprefix(prefix) in in_plans, f"row {name!r} names no step of the {command} plan"


def test_every_mutating_cutover_step_has_its_crash_row() -> None:
    names = {f.name for f in FAULTS}
    for step in CUTOVER_PLAN:
        if step in CUTOVER_MUTATING:
            assert f"crash after cutover step {step}" in names, f"cutover step {step} changes state and has no row"
    for name in names:
        if name.startswith("crash after cutover step "):
            assert name.removeprefix("crash after cutover step ") in CUTOVER_PLAN, f"row {name!r} names no step"


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(lab: Lab, fault: Fault, tmp_path: Path) -> None:
    outcome = run_fault(lab, fault, tmp_path)
    assert outcome.ok, f"{fault.name}: expected {fault.expected}; got {outcome.got}"
