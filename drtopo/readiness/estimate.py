"""The RTO and RPO if the primary region failed now (pure): measured parts (the last region-failure drill, the live
lags) and modelled parts (the settings), each labelled as which.

RTO: the last region-failure drill's client-visible phases, each as measured or modelled as the drill said; with no
drill recorded, only what the settings model (detection by the health check, the operator's decision, the DNS TTL)
and a note that the promotion itself is unmeasured. RPO: the worse of the live replica lag (the database) and the
oldest record MirrorMaker has not copied (Kafka): what a promotion now would lose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from drtopo.settings import Settings

MEASURED, MODELLED = "measured", "modelled"
SCENARIO = "region-failure"


@dataclass(frozen=True)
class Part:
    name: str
    seconds: float | None
    kind: str  # MEASURED or MODELLED
    source: str


@dataclass(frozen=True)
class Figure:
    seconds: float | None
    objective_seconds: float
    parts: list[Part] = field(default_factory=list)
    note: str = ""

    @property
    def within(self) -> bool | None:
        return None if self.seconds is None else self.seconds <= self.objective_seconds


@dataclass(frozen=True)
class Estimate:
    rto: Figure
    rpo: Figure

    def to_dict(self) -> dict[str, Any]:
        return {name: {**asdict(fig), "within": fig.within} for name, fig in (("rto", self.rto), ("rpo", self.rpo))}


def modelled_rto_parts(settings: Settings) -> list[Part]:
    dns = settings.dns
    return [
        Part(
            "detection",
            dns.failure_threshold * dns.request_interval_seconds,
            MODELLED,
            "health check threshold x interval",
        ),
        Part("decision", settings.drill.decision_seconds, MODELLED, "drtopo:drill.decisionSeconds"),
        Part("dns", dns.ttl_seconds, MODELLED, "the failover record's TTL"),
    ]


def rto(settings: Settings, drill: Mapping[str, Any] | None) -> Figure:
    objective = settings.objectives.region_failure.rto_seconds
    if drill and drill.get("phases"):
        parts = [
            Part(
                p["phase"],
                p.get("seconds"),
                MODELLED if str(p.get("how", "")).startswith("modelled") else MEASURED,
                f"region-failure drill at {drill['at']}: {p.get('how', '')}",
            )
            for p in drill["phases"]
        ]
        total = sum(p.seconds for p in parts if p.seconds is not None)
        return Figure(round(total, 3), objective, parts, f"the phases of the last region-failure drill ({drill['at']})")
    if drill and drill.get("rto_seconds") is not None:
        part = Part("drill", drill["rto_seconds"], MEASURED, f"region-failure drill at {drill['at']}")
        return Figure(drill["rto_seconds"], objective, [part], "the last region-failure drill's RTO")
    parts = modelled_rto_parts(settings)
    return Figure(
        None,
        objective,
        parts,
        "no region-failure drill recorded: the promotion is unmeasured, so no total; only the modelled parts",
    )


def rpo(settings: Settings, replica_lag: float | None, mirror_lag: float | None) -> Figure:
    objective = settings.objectives.region_failure.rpo_seconds
    parts = [
        Part("database", replica_lag, MEASURED, "live replica lag"),
        Part("kafka", mirror_lag, MEASURED, "live age of the oldest record MirrorMaker has not copied"),
    ]
    known = [p.seconds for p in parts if p.seconds is not None]
    if len(known) < len(parts):
        return Figure(None, objective, parts, "a part is unmeasurable now: the loss cannot be bounded")
    return Figure(round(max(known), 3), objective, parts, "the worse of the database and Kafka")


def estimate(
    settings: Settings, drill: Mapping[str, Any] | None, replica_lag: float | None, mirror_lag: float | None
) -> Estimate:
    """`drill`: the newest region-failure record of `drills.history` (None: none recorded)."""
    return Estimate(rto(settings, drill), rpo(settings, replica_lag, mirror_lag))
