"""The lab's pair: one database with an RDS control plane (the emulator's instance, which only half-models a
replica's promotion) and a self-managed data plane (the real server its clients reach).

Promotion and rebuild do both halves, the control plane first, as the program and the server each need; everything
a client can observe (reachable, replica, lag, fence, a restore from base backup + WAL) is the server's, and
`restorer(rds=True)` is the control plane's restore-to-time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drtopo.database.pitr import cutover
from drtopo.database.pitr.recovery import ArchiveCopy
from drtopo.database.pitr.request import PitrRequest
from drtopo.database.pitr.window import Shown
from drtopo.database.platform import Database
from drtopo.database.replication import Lag
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report
from drtopo.settings import Settings


@dataclass(frozen=True)
class PairedDatabase:
    """`control`: the RDS instance (`RdsDatabase` keeping the outputs' address, the server's, across generations);
    `data`: the server (`SelfManagedDatabase`)."""

    control: Database
    data: Database

    @property
    def outputs(self) -> StackOutputs:
        return self.control.outputs

    def reachable(self) -> bool:
        return self.data.reachable()

    def rebuildable_when_down(self) -> bool:
        return self.data.rebuildable_when_down() or self.control.rebuildable_when_down()

    def open_for_reading(self) -> bool:
        return self.data.open_for_reading()

    def require_replica(self) -> None:
        self.data.require_replica()

    def lag(self, primary: Database | None) -> Lag:
        return self.data.lag(primary)

    def fence(self) -> dict[str, Any]:
        return self.data.fence()

    def promote(self, lift_lease_fence: bool = False) -> dict[str, Any]:
        return {**self.control.promote(lift_lease_fence), **self.data.promote(lift_lease_fence)}

    def rebuild(self, source: Database, settings: Settings, deployed: str | None = None) -> dict[str, Any]:
        return {**self.control.rebuild(source, settings, deployed), **self.data.rebuild(source, settings, deployed)}

    def protect(self, name: str) -> dict[str, Any]:
        return {**self.control.protect(name), **self.data.protect(name)}

    def generation(self, settings: Settings, generation: int | None = None, refresh: bool = False) -> PairedDatabase:
        control = self.control.generation(settings, generation, refresh)
        return PairedDatabase(control, self.data.generation(settings, generation, refresh))

    # -- point in time: the server's, or with `rds` the control plane's ---------------------------------------------
    def restorer(self, rds: bool = False) -> Database:
        return self.control if rds else self.data

    def check_restore(self, request: PitrRequest) -> None:
        self.data.check_restore(request)

    def restore_title(self, request: PitrRequest) -> str:
        return self.data.restore_title(request)

    def window(self, report: Report, copy: ArchiveCopy | None = None) -> Shown:
        return self.data.window(report, copy)

    def restore(
        self, request: PitrRequest, report: Report, clock: Clock, copy: ArchiveCopy | None = None
    ) -> dict[str, Any]:
        return self.data.restore(request, report, clock, copy)

    def cutover(
        self,
        request: PitrRequest,
        report: Report,
        clock: Clock,
        peer: Callable[[], Database | None] = lambda: None,
        steps: cutover.Steps | None = None,
    ) -> list[str]:
        return self.data.cutover(request, report, clock, peer, steps)

    def follow(self, source: Database, report: Report, clock: Clock) -> None:
        self.data.follow(source, report, clock)
