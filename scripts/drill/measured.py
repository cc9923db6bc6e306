"""What a drill measures in a scenario, typed: the figures every scenario shares (`Measured`) and, in `details`, the
ones only its scenario has (each scenario's own `Figures` class, in its file).

A figure is in the report once something measured it, even as None ("looked, found none"); one nobody measured is
left out. The JSON keys are the field names, in the order they were first measured, the scenario's own figures where
its `details` were attached.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class Figures:
    """Typed figures that remember which of them were measured (assigned), and in what order."""

    def __post_init__(self) -> None:
        # What the constructor was given counts as measured (every field without a default); the defaults do not.
        given = {f.name: None for f in fields(self) if getattr(self, f.name) is not f.default}
        object.__setattr__(self, "_measured", given)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        measured = self.__dict__.get("_measured")
        if measured is not None:
            measured.setdefault(name, None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dict__.get("_measured", {}):
            value = getattr(self, name)
            if isinstance(value, Figures):
                out.update(value.to_dict())
            else:
                out[name] = value
        return out


@dataclass
class Measured(Figures):
    """The figures the runner and the report read, whatever the scenario."""

    load: str | None = None  # the --load level's name
    wan_latency_ms: int | None = None  # the round trip the links between the regions had (--wan-latency)
    seed_rows_added: int | None = None
    seed_seconds: float | None = None
    failure_at_seconds: float | None = None  # since the scenario's clock started (the runner records it)
    rto_seconds: float | None = None  # the lab's RTO: from the failure until a client is served again
    rpo_seconds: float | None = None
    rows_lost: int | None = None
    rows_acknowledged: int | None = None
    failed_requests: int | None = None
    messages_acknowledged: int | None = None
    messages_lost: int | None = None
    messages_reread: int | None = None
    # The part of the lab's RTO a recovery command took, and what it was (the rest is the client's reconnect).
    action: str | None = None
    action_seconds: float | None = None
    # The part of the action that brought the application up in the target region (scale-up, rollout, health), and
    # how it stood before (pilot light or warm standby); a phase of its own in the RTO.
    application: str | None = None
    application_seconds: float | None = None
    rows_rpo_seconds: float | None = None  # of the background writer of a scenario that writes no rows itself
    first_ack_after_failure_seconds: float | None = None
    write_rate_goal: float | None = None
    write_rate_achieved: float | None = None
    kafka_rate_goal: float | None = None
    kafka_rate_achieved: float | None = None
    client_rto_seconds: float | None = None  # the sum of the client-visible RTO's phases
    details: Figures | None = None  # the scenario's own figures, reported beside these
