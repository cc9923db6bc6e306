"""The steps of a failover (promote) and a failback, in order, with what each does: pure, for the runner and --dry-run.

Every step has one name, from `Step`: the journal records it, the crash tests' hook (`DRTOPO_CRASH_AFTER`) names it,
and the runner finds the step's function and result type by it (drtopo/failover/steps.py), so renaming a step
is one edit here. `SPECS` says of each step whether it changes anything outside the process and whether a resumed
run does it again; a planned step adds the text --dry-run prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Step(StrEnum):
    PREFLIGHT = "preflight"
    GUARD = "guard"
    FENCE = "fence"
    DRAIN = "drain"
    PROMOTE = "promote"
    LEASE_GUARDS = "lease-guards"
    CONSUMER_GROUP = "consumer-group"
    APPLICATION = "application"
    DNS = "dns"
    APPLICATION_DOWN = "application-down"
    ROLES = "roles"
    PROTECT = "protect"
    REBUILD = "rebuild"
    CATCH_UP = "catch-up"
    REBUILD_PEER = "rebuild-peer"


class Resume(StrEnum):
    """What a resumed run does with a step the interrupted run finished (only before the point of no return)."""

    KEEP = "keep"  # reuse its journalled result
    REPEAT = "repeat"  # do it again: the world may have changed since (who answers, the replica lag)
    REPEAT_IF_UNDONE = "repeat-if-undone"  # again when its result says it could not act (an unreachable old primary)


@dataclass(frozen=True)
class StepSpec:
    step: Step
    mutating: bool  # changes something outside this process: a journal holding none of these can be dropped
    resume: Resume = Resume.KEEP


SPECS: dict[Step, StepSpec] = {
    s.step: s
    for s in (
        StepSpec(Step.PREFLIGHT, mutating=False, resume=Resume.REPEAT),
        StepSpec(Step.GUARD, mutating=False, resume=Resume.REPEAT),
        StepSpec(Step.FENCE, mutating=True, resume=Resume.REPEAT_IF_UNDONE),
        StepSpec(Step.DRAIN, mutating=True),
        StepSpec(Step.PROMOTE, mutating=True),
        StepSpec(Step.LEASE_GUARDS, mutating=True),
        StepSpec(Step.CONSUMER_GROUP, mutating=True),
        StepSpec(Step.APPLICATION, mutating=True),
        StepSpec(Step.DNS, mutating=True),
        StepSpec(Step.APPLICATION_DOWN, mutating=True),
        StepSpec(Step.ROLES, mutating=True),
        StepSpec(Step.PROTECT, mutating=True),
        StepSpec(Step.REBUILD, mutating=True),
        StepSpec(Step.CATCH_UP, mutating=False),
        StepSpec(Step.REBUILD_PEER, mutating=True),
    )
}
MUTATING = frozenset(s.step for s in SPECS.values() if s.mutating)
# A step run only once another is done (in this run or the interrupted one): the old region's application goes down
# only after DNS has left it, so clients that DNS still sends there are never left without one.
REQUIRES: dict[Step, Step] = {Step.APPLICATION_DOWN: Step.DNS}

# Once the database is promoted the region pair has a new writer: from then on no step may stop the run, because
# clients, DNS and the stacks' roles must all follow it. Each later failure is reported and left for a rerun.
POINT_OF_NO_RETURN = Step.PROMOTE


@dataclass(frozen=True)
class PlannedStep:
    name: Step
    action: str


@dataclass(frozen=True)
class AppMove:
    """The application's replica change a plan shows: the target's Deployment up to the primary's count, the old
    region's down to the standby's; `*_now` as read from each region's API (None: not read, or no answer)."""

    deployment: str
    target_replicas: int
    peer_replicas: int
    target_now: int | None = None
    peer_now: int | None = None


def _count(now: int | None, then: int) -> str:
    return f"{'?' if now is None else now} -> {then}"


def _application(target: str, peer: str, app: AppMove | None) -> list[PlannedStep]:
    """The application up in `target` before DNS moves; `peer`'s down after it (the runbook's "stop traffic to the
    primary"), so an unreachable old region never holds up the DNS flip."""
    if app is None:
        up = f"scale {target}'s application to the primary's replicas"
        down = f"scale {peer}'s application to the standby's replicas"
    else:
        up = f"scale {target}'s {app.deployment} {_count(app.target_now, app.target_replicas)} replicas"
        down = f"scale {peer}'s {app.deployment} {_count(app.peer_now, app.peer_replicas)} replicas"
    return [
        PlannedStep(
            Step.APPLICATION,
            f"{up} through {target}'s own Kubernetes API (server-side apply, field manager drtopo), wait for the "
            f"rollout as `kubectl rollout status` does, check {target}'s own health endpoint (DNS moves only to a "
            "healthy application unless --skip-app-check)",
        ),
        PlannedStep(Step.APPLICATION_DOWN, f"{down} through {peer}'s own API when it answers (best effort, bounded)"),
    ]


def _guard(target: str) -> PlannedStep:
    return PlannedStep(Step.GUARD, f"measure {target}'s replica lag; refuse beyond the region-failure RPO")


def _fence_and_drain(target: str, peer: str) -> list[PlannedStep]:
    return [
        PlannedStep(Step.FENCE, f"fence {peer}: read-only by default, client sessions ended, a write probe refused"),
        PlannedStep(Step.DRAIN, f"wait until {target} has replayed {peer}'s final WAL position (zero data loss)"),
    ]


def _switch(target: str, peer: str, app: AppMove | None) -> list[PlannedStep]:
    """What follows the promotion in both directions: clients, the application (after its group's offsets, so it
    resumes from them), DNS and the stacks' roles move to `target`; then `peer`'s application goes down."""
    up, down = _application(target, peer, app)
    return [
        PlannedStep(Step.CONSUMER_GROUP, f"commit the consumer group's translated offsets on {target}'s Kafka cluster"),
        up,
        PlannedStep(
            Step.DNS,
            f"{target}'s takeover signal on in its region, {peer}'s off (Route53 then answers {target}'s record); "
            "the one Route53 change batch of both records only if the signal cannot be written",
        ),
        down,
        PlannedStep(Step.ROLES, f"Pulumi.{target}.yaml role primary, Pulumi.{peer}.yaml role standby"),
    ]


def _lease_guards(target: str, peer: str) -> list[PlannedStep]:
    """With the primary lease (drtopo:fencing.mode lease): the guards follow the promotion at once."""
    return [
        PlannedStep(
            Step.LEASE_GUARDS,
            f"restart {target}'s lease guard until it renews the epoch taken; stop {peer}'s once its database refuses "
            f"writes (else leave it running: it fences {peer} the moment it answers)",
        )
    ]


def _protect(target: str, peer: str) -> PlannedStep:
    return PlannedStep(
        Step.PROTECT,
        f"protect {target}'s new timeline without waiting for `pulumi up`: resume its backup CronJobs through its own "
        f"Kubernetes API, a base backup into its WAL bucket (RDS: a snapshot), WAL archiving checked there; say "
        f"what protection is missing until {peer} returns",
    )


def promote_plan(
    target: str, peer: str, peer_reachable: bool, app: AppMove | None = None, lease: bool = False
) -> list[PlannedStep]:
    """Failover to `target`: planned (zero loss) when the old primary `peer` answers, else unplanned; `app` the
    application's replica change to show (None: said without counts); `lease`: the primary lease is on."""
    fence = (
        _fence_and_drain(target, peer)
        if peer_reachable
        else [
            PlannedStep(
                Step.FENCE,
                f"{peer} is unreachable: fence owed, recorded at promotion, paid the moment {peer} answers",
            )
        ]
    )
    return [
        PlannedStep(Step.PREFLIGHT, f"load settings and outputs of {target} and {peer}; check who answers"),
        _guard(target),
        *fence,
        PlannedStep(
            Step.PROMOTE, f"promote {target}'s database (RDS promote_read_replica / pg_promote) until writable"
        ),
        *(_lease_guards(target, peer) if lease else []),
        *_switch(target, peer, app),
        _protect(target, peer),
    ]


def failback_plan(target: str, peer: str, app: AppMove | None = None, lease: bool = False) -> list[PlannedStep]:
    """Back to the original primary `target` from the current primary `peer`, as a planned switchover; `lease`: the
    primary lease is on."""
    return [
        PlannedStep(
            Step.PREFLIGHT, f"load settings and outputs of {target} and {peer}; {peer} must be the writable primary"
        ),
        PlannedStep(
            Step.REBUILD,
            f"re-apply to {peer} what {target} wrote after the fork (what cannot be is listed and stops the run "
            f"until acknowledged), then rebuild {target} as a replica of {peer} (pg_rewind, else pg_basebackup; "
            "RDS replica)",
        ),
        PlannedStep(Step.CATCH_UP, f"wait until {target} has replayed what {peer} has written"),
        _guard(target),
        *_fence_and_drain(target, peer),
        PlannedStep(Step.PROMOTE, f"promote {target}'s database until writable"),
        *(_lease_guards(target, peer) if lease else []),
        *_switch(target, peer, app),
        _protect(target, peer),
        PlannedStep(
            Step.REBUILD_PEER, f"rebuild {peer} as a replica of {target}, so the region pair is protected again"
        ),
    ]


def render(plan: list[PlannedStep]) -> str:
    width = max(len(s.name) for s in plan)
    return "\n".join(f"{i:2d}. {s.name:<{width}}  {s.action}" for i, s in enumerate(plan, 1))
