"""The steps of a failover (promote) and a failback, in order, with what each does: pure, for the runner and --dry-run.

A step's name is what the journal records and what the crash tests' hook (`DRTOPO_CRASH_AFTER`) names; its text
is what --dry-run prints.
"""

from __future__ import annotations

from dataclasses import dataclass

# Steps after which something outside this process has changed; a journal holding none of them can be dropped.
MUTATING = frozenset({"rebuild", "fence", "drain", "promote", "consumer-group", "dns", "roles", "rebuild-peer"})


@dataclass(frozen=True)
class PlannedStep:
    name: str
    action: str


def _guard(target: str) -> PlannedStep:
    return PlannedStep("guard", f"measure {target}'s replica lag; refuse beyond the region-failure RPO")


def _fence_and_drain(target: str, peer: str) -> list[PlannedStep]:
    return [
        PlannedStep("fence", f"fence {peer}: read-only by default, client sessions ended, a write probe refused"),
        PlannedStep("drain", f"wait until {target} has replayed {peer}'s final WAL position (zero data loss)"),
    ]


def _switch(target: str, peer: str) -> list[PlannedStep]:
    """What follows the promotion in both directions: clients, DNS and the stacks' roles move to `target`."""
    return [
        PlannedStep("consumer-group", f"commit the consumer group's translated offsets on {target}'s Kafka cluster"),
        PlannedStep(
            "dns",
            f"{target}'s takeover signal on in its region, {peer}'s off (Route53 then answers {target}'s record); "
            "the one Route53 change batch of both records only if the signal cannot be written",
        ),
        PlannedStep("roles", f"Pulumi.{target}.yaml role primary, Pulumi.{peer}.yaml role standby"),
    ]


def promote_plan(target: str, peer: str, peer_reachable: bool) -> list[PlannedStep]:
    """Failover to `target`: planned (zero loss) when the old primary `peer` answers, else unplanned."""
    fence = (
        _fence_and_drain(target, peer)
        if peer_reachable
        else [
            PlannedStep(
                "fence", f"{peer} is unreachable: fence owed, recorded at promotion, paid the moment {peer} answers"
            )
        ]
    )
    return [
        PlannedStep("preflight", f"load settings and outputs of {target} and {peer}; check who answers"),
        _guard(target),
        *fence,
        PlannedStep("promote", f"promote {target}'s database (RDS promote_read_replica / pg_promote) until writable"),
        *_switch(target, peer),
    ]


def failback_plan(target: str, peer: str) -> list[PlannedStep]:
    """Back to the original primary `target` from the current primary `peer`, as a planned switchover."""
    return [
        PlannedStep(
            "preflight", f"load settings and outputs of {target} and {peer}; {peer} must be the writable primary"
        ),
        PlannedStep("rebuild", f"rebuild {target} as a replica of {peer} (pg_rewind, else pg_basebackup; RDS replica)"),
        PlannedStep("catch-up", f"wait until {target} has replayed what {peer} has written"),
        _guard(target),
        *_fence_and_drain(target, peer),
        PlannedStep("promote", f"promote {target}'s database until writable"),
        *_switch(target, peer),
        PlannedStep("rebuild-peer", f"rebuild {peer} as a replica of {target}, so the region pair is protected again"),
    ]


def render(plan: list[PlannedStep]) -> str:
    width = max(len(s.name) for s in plan)
    return "\n".join(f"{i:2d}. {s.name:<{width}}  {s.action}" for i, s in enumerate(plan, 1))
