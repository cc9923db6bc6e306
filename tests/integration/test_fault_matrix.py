"""The fault matrix (bench/faults.py) on the lab: every injected fault ends in its expected outcome.

Also runnable on its own, with a table: `python -m bench.faults`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults import FAULTS, Fault, run_fault
from lab.core import Lab

pytestmark = pytest.mark.lab


def test_the_matrix_has_at_least_fifteen_faults() -> None:
    assert len(FAULTS) >= 15
    assert len({f.name for f in FAULTS}) == len(FAULTS)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(lab: Lab, fault: Fault, tmp_path: Path) -> None:
    outcome = run_fault(lab, fault, tmp_path)
    assert outcome.ok, f"{fault.name}: expected {fault.expected}; got {outcome.got}"
