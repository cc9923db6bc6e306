"""The facts an incident message and record are built from: what the incident is, and what is known at a moment.

A command builds an `Incident` once (scenario, the stack recovering, the region that is alive, when the failure
started, whether it is a drill) and a `Facts` per message; `Figures` carries what the run measured. Times are
timezone-aware: a message that says "Start Time" in a reader's local time without saying so misleads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from drtopo.settings import SCENARIOS


class MessageKind(StrEnum):
    """The runbook's notifications: an incident starts, moves on (a step failed, promotion passed), and ends."""

    START = "start"
    UPDATE = "update"
    RESOLUTION = "resolution"


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} has no time zone; expected an aware datetime (UTC)")


@dataclass(frozen=True)
class Incident:
    """What an incident is, fixed at its start: `scenario` names its objective (drtopo:objectives), `stack` and
    `region` the side that is recovering and alive, `started_at` the failure (or the run's start when unknown)."""

    scenario: str
    stack: str
    region: str
    started_at: datetime
    drill: bool = False
    # None: the stack's drtopo:notifications.impact.
    impact: str | None = None

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario {self.scenario!r} is unknown; expected one of {', '.join(SCENARIOS)}")
        _aware("started_at", self.started_at)


@dataclass(frozen=True)
class Figures:
    """What a run measured: client-visible RTO and RPO in seconds, rows lost; None while not measured."""

    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    rows_lost: int | None = None


@dataclass(frozen=True)
class Facts:
    """One message's facts: its kind, the incident, when it is sent (`at`), what happened (`event`, required for
    an update), the figures so far and what is left to do."""

    kind: MessageKind
    incident: Incident
    at: datetime
    event: str = ""
    figures: Figures = Figures()
    left_to_do: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _aware("at", self.at)
        if self.kind is MessageKind.UPDATE and not self.event.strip():
            raise ValueError("an update has no event; expected what happened (a step failed, promotion done, ...)")


def utc_text(moment: datetime) -> str:
    """`2026-12-02 09:31:02 UTC`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration_text(seconds: float) -> str:
    """A duration as people say it: `4 h`, `1 h 5 min`, `2 min 5 s`, `12.3 s`, `0 s`."""
    if seconds < 0:
        raise ValueError(f"duration {seconds} s is negative; expected 0 or more seconds")
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{secs} s" if secs else ""]
    return " ".join(p for p in parts if p)


def offset_text(delta: timedelta) -> str:
    """`+0:03:12` from the incident's start (`-0:00:05` before it); whole seconds cut as `utc_text` cuts them."""
    seconds = delta // timedelta(seconds=1)
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"
