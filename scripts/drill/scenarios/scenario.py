"""What a drill scenario is: one object saying what it is and how it is played, and the run it is played in.

A scenario (`Scenario`) names its row of the objectives table, its place in the drill's order, the load it carries
itself and its client-visible RTO phases; it injects its failure (telling the run when the fault is in), recovers
with the companion commands and verifies what came back. The runner (scripts/drill/run.py) hands it a `ScenarioRun`:
the drill's context, the result to fill, the scenario's clock, and the failure time, which the run records.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from drtopo.report import Clock, Report
from drtopo.settings import Objective, Settings
from scripts.drill.measured import Measured
from scripts.drill.report import ScenarioResult
from scripts.drill.scenarios.context import DrillContext
from scripts.drill.scenarios.phases import Phase

State = TypeVar("State")


@dataclass
class ScenarioRun:
    """One scenario being played: the drill's context, its result, its clock and the moment the fault went in."""

    ctx: DrillContext
    result: ScenarioResult
    clock: Clock
    failure_at: float | None = None  # wall-clock time (time.time()) the fault was injected

    @property
    def measured(self) -> Measured:
        return self.result.measured

    @property
    def checks(self) -> Report:
        return self.result.checks

    def fault_injected(self) -> float:
        """The fault is in, now: records it (wall clock, and seconds since the scenario's clock started) and returns
        the wall-clock time, from which the scenario measures its recovery."""
        self.failure_at = time.time()
        self.measured.failure_at_seconds = round(self.clock.elapsed(), 3)
        return self.failure_at


class Scenario(ABC, Generic[State]):
    """One row of the objectives table, played on the lab: `inject`, then `recover`, then `verify`.

    `inject` returns what the other two need (the scenario's writers, what it saw before the fault, ...).
    """

    name: ClassVar[str]  # as the operator types it: --scenario NAME, --objective NAME.rto=...
    objectives_key: ClassVar[str]  # its field of drtopo.settings.Objectives
    order: ClassVar[int]  # `--scenario all` runs least destructive first
    writes_rows: ClassVar[bool]  # it runs its own row writer (else the drill keeps the service's writes going)
    produces_to_kafka: ClassVar[bool] = False  # it produces itself (else the drill's background producer does)
    rto_phases: ClassVar[Sequence[Phase]]  # its client-visible RTO, in order (scripts/drill/scenarios/phases.py)

    @property
    def summary(self) -> str:
        """What it does in one line: its module docstring's first line, without the leading name."""
        doc = sys.modules[type(self).__module__].__doc__ or ""
        return doc.splitlines()[0].split(": ", 1)[-1]

    def objective(self, settings: Settings) -> Objective:
        objective: Objective = getattr(settings.objectives, self.objectives_key)
        return objective

    def play(self, run: ScenarioRun) -> None:
        state = self.inject(run)
        self.recover(run, state)
        self.verify(run, state)

    @abstractmethod
    def inject(self, run: ScenarioRun) -> State:
        """Load the lab as the scenario needs, then inject the failure and call `run.fault_injected()`."""

    @abstractmethod
    def recover(self, run: ScenarioRun, state: State) -> None:
        """Recover as the runbook says (or let the platform do it) and measure when clients were served again."""

    @abstractmethod
    def verify(self, run: ScenarioRun, state: State) -> None:
        """Count what survived, set the figures and the checks."""
