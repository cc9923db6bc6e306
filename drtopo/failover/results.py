"""What each failover step found or did, as typed records: journalled as JSON and read back by field on resume.

`RESULTS` names the record of every step (`drtopo.failover.plan.Step`); the journal stores `as_dict()` and rebuilds
the record with `from_dict`, so a resumed run reads `FenceResult.fenced`, never a key of a dict. Fields the platforms
fill differently (what RDS and PostgreSQL each said of a promotion or a rebuild) stay in a `details` mapping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

from drtopo.failover.plan import Step


@dataclass(frozen=True)
class StepResult:
    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def undone(self) -> bool:
        """True when the step ran but could not act (a resumed run repeats it: `Resume.REPEAT_IF_UNDONE`)."""
        return False


@dataclass(frozen=True)
class PreflightResult(StepResult):
    target_reachable: bool
    peer_reachable: bool


@dataclass(frozen=True)
class GuardResult(StepResult):
    lag: dict[str, Any] = field(default_factory=dict)
    rpo_seconds: float = 0.0
    refused: bool = False


@dataclass(frozen=True)
class FenceResult(StepResult):
    fenced: bool
    reason: str | None = None  # why not: "unreachable"
    owed: bool = False  # a fence the promotion records, paid when the old primary answers
    method: str | None = None
    proof: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def undone(self) -> bool:
        return not self.fenced


@dataclass(frozen=True)
class DrainResult(StepResult):
    final_lsn: str
    waited_seconds: float


@dataclass(frozen=True)
class PromoteResult(StepResult):
    details: dict[str, Any] = field(default_factory=dict)
    fence_pending: str | None = None  # where the fence owed to the old primary is recorded
    fork: str | None = None  # where the fork from the old primary is recorded (drtopo/failover/takeback.py)


@dataclass(frozen=True)
class ConsumerGroupResult(StepResult):
    moved: bool = False
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplicationResult(StepResult):
    replicas: int = 0  # the target's Deployment now (the primary's count)
    before: int | None = None  # what it had
    rolled_out_seconds: float = 0.0
    healthy: bool = False
    health: str = ""  # what the region's own health endpoint answered
    app_check_skipped: bool = False  # --skip-app-check: DNS moves even to an application not seen healthy


@dataclass(frozen=True)
class ApplicationDownResult(StepResult):
    scaled: bool = False  # the old region's Deployment is at the standby's count
    detail: str = ""  # what was done, or why not (its API did not answer)


@dataclass(frozen=True)
class DnsResult(StepResult):
    mode: str = ""  # "signal" or "fallback"
    after: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    dns_path: str = ""  # "data plane" or "fallback" (drtopo.failover.dns)


@dataclass(frozen=True)
class RolesResult(StepResult):
    changed: list[str] = field(default_factory=list)
    stacks: list[dict[str, Any]] = field(default_factory=list)
    marker: dict[str, Any] = field(default_factory=dict)
    next_commands: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProtectResult(StepResult):
    resumed_jobs: list[str] = field(default_factory=list)  # the backup CronJobs unsuspended
    base_backup: dict[str, Any] = field(default_factory=dict)  # where the new timeline's base backup is
    archived_wal: str | None = None  # the segment seen archived into the WAL bucket
    missing: list[str] = field(default_factory=list)  # what protection the pair lacks until the peer returns


@dataclass(frozen=True)
class RebuildResult(StepResult):
    details: dict[str, Any] = field(default_factory=dict)
    pulumi_import: list[str] = field(default_factory=list)  # commands that adopt what the rebuild created


@dataclass(frozen=True)
class CatchUpResult(StepResult):
    waited_seconds: float = 0.0


@dataclass(frozen=True)
class LeaseGuardsResult(StepResult):
    renewing: dict[str, Any] = field(default_factory=dict)  # the lease the new primary's guard renews
    started_seconds: float = 0.0  # its restart, until its pod ran
    old_guard: str = ""  # "stopped", or why it was left running


RESULTS: dict[Step, type[StepResult]] = {
    Step.PREFLIGHT: PreflightResult,
    Step.GUARD: GuardResult,
    Step.FENCE: FenceResult,
    Step.DRAIN: DrainResult,
    Step.PROMOTE: PromoteResult,
    Step.LEASE_GUARDS: LeaseGuardsResult,
    Step.CONSUMER_GROUP: ConsumerGroupResult,
    Step.APPLICATION: ApplicationResult,
    Step.DNS: DnsResult,
    Step.APPLICATION_DOWN: ApplicationDownResult,
    Step.ROLES: RolesResult,
    Step.PROTECT: ProtectResult,
    Step.REBUILD: RebuildResult,
    Step.CATCH_UP: CatchUpResult,
    Step.REBUILD_PEER: RebuildResult,
}
