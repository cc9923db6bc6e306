"""The incident record: a Markdown file a post-mortem starts from, built from what a run reported.

`run_record(report, ...)` turns a command's `Report` (its steps' timeline, checks and measured figures) into a
`RunRecord`; `record_markdown(record, settings)` renders it: who ran what from where, the timeline with times, the
measured RTO split by phase, the RPO and rows lost, the checks, the notifications, what is left, and the runbook's
emergency checklist (0-15 min, 15 min-1 h, 1-4 h, after) marked against the timeline. Nothing here writes a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from drtopo.incident.facts import Figures, Incident, MessageKind, duration_text, offset_text, utc_text
from drtopo.report import FAIL, PASS, SKIP, Check, Report
from drtopo.settings import Settings


@dataclass(frozen=True)
class StepTime:
    """One step of a run: when it started (seconds from the run's start) and how long it took; `resumed` when an
    earlier, interrupted run did it (no duration of its own)."""

    name: str
    start_seconds: float
    seconds: float | None
    ok: bool = True
    error: str = ""
    resumed: bool = False


@dataclass(frozen=True)
class Phase:
    """One phase of the client-visible RTO (the drill's `phases`): name, seconds, how measured or modelled."""

    name: str
    seconds: float
    how: str


INCIDENT_TOPIC = "incident topic"
STATUS_PAGE = "status page"


@dataclass(frozen=True)
class Notice:
    """A notification the run tried to send: its kind, when, and whether it went (detail: message id or reason)."""

    kind: MessageKind
    at: datetime
    sent: bool
    detail: str = ""
    # Where it went: the incident topic (SNS) or the status page (drtopo/incident/statuspage.py).
    channel: str = INCIDENT_TOPIC


@dataclass(frozen=True)
class RunRecord:
    """What the record tells: the incident, the command and who ran it from where, the run's times, steps, checks,
    figures, RTO phases, notifications and what is left to do."""

    incident: Incident
    command: str
    operator: str
    run_started_at: datetime
    ok: bool
    ended_at: datetime | None = None
    steps: tuple[StepTime, ...] = ()
    checks: tuple[Check, ...] = ()
    figures: Figures = field(default_factory=Figures)
    phases: tuple[Phase, ...] = ()
    notices: tuple[Notice, ...] = ()
    left_to_do: tuple[str, ...] = ()
    report_path: str | None = None
    log_path: str | None = None

    def at(self, seconds: float) -> datetime:
        """The moment `seconds` after the run started."""
        return self.run_started_at + timedelta(seconds=seconds)

    def since_incident(self, moment: datetime) -> timedelta:
        return moment - self.incident.started_at


def steps_from_timeline(entries: Iterable[Mapping[str, Any]]) -> tuple[StepTime, ...]:
    """Steps from a report's `measured.steps`, in either shape a run leaves there: a Clock's (`step`,
    `start_seconds`, `seconds`, `ok`, `error`) or a failover Runner's (`step`, `seconds`, `at_seconds` at the end;
    `resumed` without a duration)."""
    steps = []
    for entry in entries:
        seconds = entry.get("seconds")
        if "start_seconds" in entry:
            start = float(entry["start_seconds"])
        else:
            start = float(entry.get("at_seconds", 0.0)) - float(seconds or 0.0)
        steps.append(
            StepTime(
                name=str(entry["step"]),
                start_seconds=round(start, 3),
                seconds=None if seconds is None else float(seconds),
                ok=bool(entry.get("ok", True)),
                error=str(entry.get("error", "")),
                resumed=bool(entry.get("resumed", False)),
            )
        )
    return tuple(steps)


def run_record(
    report: Report,
    *,
    incident: Incident,
    command: str,
    operator: str,
    run_started_at: datetime,
    ended_at: datetime | None = None,
    notices: Iterable[Notice] = (),
    report_path: str | None = None,
) -> RunRecord:
    """The record of a run from its Report: `measured` gives `steps`, `rto_seconds` (or `client_rto_seconds`),
    `rpo_seconds`, `rows_lost`, `phases` and `left_to_do` when the run measured them."""
    measured = report.measured
    rto = measured.get("client_rto_seconds", measured.get("rto_seconds"))
    return RunRecord(
        incident=incident,
        command=command,
        operator=operator,
        run_started_at=run_started_at,
        ok=report.ok,
        ended_at=ended_at,
        steps=steps_from_timeline(measured.get("steps") or ()),
        checks=tuple(report.checks),
        figures=Figures(
            rto_seconds=None if rto is None else float(rto),
            rpo_seconds=None if measured.get("rpo_seconds") is None else float(measured["rpo_seconds"]),
            rows_lost=None if measured.get("rows_lost") is None else int(measured["rows_lost"]),
        ),
        phases=tuple(
            Phase(str(p["name"]), float(p["seconds"]), str(p.get("how", ""))) for p in measured.get("phases") or ()
        ),
        notices=tuple(notices),
        left_to_do=tuple(str(s) for s in measured.get("left_to_do") or ()),
        report_path=report_path,
        log_path=report.log,
    )


@dataclass(frozen=True)
class ChecklistPhase:
    """A phase of the runbook's emergency response checklist: its window from the incident's start (None: after
    recovery, whenever that is) and its items."""

    title: str
    start: timedelta | None
    end: timedelta | None
    items: tuple[str, ...]

    @property
    def window(self) -> str:
        if self.start is None or self.end is None:
            return "after recovery"
        start = duration_text(self.start.total_seconds()) if self.start else "0 min"
        return f"{start} - {duration_text(self.end.total_seconds())}"


CHECKLIST = (
    ChecklistPhase(
        "Immediate Response",
        timedelta(0),
        timedelta(minutes=15),
        (
            "Assess the scope of the disaster",
            "Notify stakeholders via incident response channel",
            "Activate disaster recovery team",
            "Update status page with incident information",
        ),
    ),
    ChecklistPhase(
        "Short-term Response",
        timedelta(minutes=15),
        timedelta(hours=1),
        (
            "Execute appropriate recovery procedure",
            "Monitor recovery progress",
            "Communicate updates to stakeholders",
            "Document actions taken",
        ),
    ),
    ChecklistPhase(
        "Recovery Phase",
        timedelta(hours=1),
        timedelta(hours=4),
        (
            "Complete system recovery",
            "Verify all services are operational",
            "Conduct post-recovery validation",
            "Update stakeholders on resolution",
        ),
    ),
    ChecklistPhase(
        "Post-Incident",
        None,
        None,
        (
            "Conduct post-mortem analysis",
            "Update disaster recovery procedures",
            "Schedule recovery testing",
            "Implement preventive measures",
        ),
    ),
)


BEYOND = "beyond the runbook's 4 h"


def checklist_phase(since_incident: timedelta) -> str:
    """The checklist phase a moment falls in, by its window (a moment before the incident's start counts as the
    first); BEYOND after the last window."""
    for phase in CHECKLIST:
        if phase.end is not None and since_incident < phase.end:
            return phase.title
    return BEYOND


@dataclass(frozen=True)
class Evidence:
    """What the record shows of a checklist item: done or not, when, and a note."""

    done: bool
    note: str
    at: datetime | None = None


def _first_notice(record: RunRecord, kind: MessageKind) -> Evidence:
    tried = [n for n in record.notices if n.kind is kind and n.channel == INCIDENT_TOPIC]
    sent = [n for n in tried if n.sent]
    if sent:
        return Evidence(True, f"{kind.value} notification sent to the incident topic", sent[0].at)
    if tried:
        return Evidence(False, f"{kind.value} notification not sent: {tried[-1].detail}")
    return Evidence(False, f"no {kind.value} notification in this run")


def _executed(record: RunRecord) -> Evidence:
    if not record.steps:
        return Evidence(False, "no step recorded")
    first = min(s.start_seconds for s in record.steps)
    return Evidence(True, f"`{record.command}` by {record.operator}", record.at(first))


def _monitored(record: RunRecord) -> Evidence:
    timed = [s for s in record.steps if not s.resumed]
    return Evidence(bool(timed), f"{len(timed)} steps timed (timeline above)" if timed else "no step timed")


def _recovered(record: RunRecord) -> Evidence:
    failed = [s.name for s in record.steps if not s.ok]
    if record.ok and not failed and not record.left_to_do:
        return Evidence(True, "every step done", record.ended_at)
    missing = list(dict.fromkeys([*failed, *record.left_to_do]))
    return Evidence(False, "not complete" + (f": {', '.join(missing)}" if missing else ": a check failed"))


def _verified(record: RunRecord) -> Evidence:
    counts = {o: sum(c.outcome == o for c in record.checks) for o in (PASS, FAIL, SKIP)}
    text = f"{counts[PASS]} checks passed, {counts[FAIL]} failed, {counts[SKIP]} skipped"
    return Evidence(bool(record.checks) and not counts[FAIL] and not counts[SKIP], text, record.ended_at)


def _by_hand(hint: Callable[[RunRecord], str]) -> Callable[[RunRecord], Evidence]:
    return lambda record: Evidence(False, hint(record))


EVIDENCE: dict[str, Callable[[RunRecord], Evidence]] = {
    "Assess the scope of the disaster": _by_hand(lambda r: "by the on-call engineer"),
    "Notify stakeholders via incident response channel": lambda r: _first_notice(r, MessageKind.START),
    "Activate disaster recovery team": _by_hand(lambda r: "by the on-call engineer (escalation levels 1-3)"),
    "Update status page with incident information": _by_hand(lambda r: "by hand"),
    "Execute appropriate recovery procedure": _executed,
    "Monitor recovery progress": _monitored,
    "Communicate updates to stakeholders": lambda r: _first_notice(r, MessageKind.UPDATE),
    "Document actions taken": lambda r: Evidence(True, "this record", r.ended_at),
    "Complete system recovery": _recovered,
    "Verify all services are operational": _verified,
    "Conduct post-recovery validation": _by_hand(
        lambda r: f"`python -m scripts.validate --stack {r.incident.stack}` unless this run's checks were its checks"
    ),
    "Update stakeholders on resolution": lambda r: _first_notice(r, MessageKind.RESOLUTION),
}


def _cell(value: object) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _row(*cells: object) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _against(record: RunRecord, phase: ChecklistPhase, evidence: Evidence) -> str:
    if evidence.at is None or not evidence.done:
        return ""
    since = record.since_incident(evidence.at)
    where = f" at {utc_text(evidence.at)} ({offset_text(since)}"
    late = phase.end is not None and since > phase.end
    return where + (f", after its window ended at +{duration_text(phase.end.total_seconds())})" if late else ")")


def _objective_line(measured: float | None, objective: float, unit: str) -> str:
    if measured is None:
        return f"not measured (objective {duration_text(objective)})"
    verdict = "met" if measured <= objective else "MISSED"
    return f"{duration_text(measured)} (objective {duration_text(objective)}): {verdict}{unit}"


def _summary(record: RunRecord, settings: Settings) -> list[str]:
    incident, figures = record.incident, record.figures
    objective = settings.objectives.for_scenario(incident.scenario)
    lost = "" if figures.rows_lost is None else f"; rows lost: {figures.rows_lost}"
    rows = [
        ("scenario", incident.scenario + (" (DRILL: no real outage)" if incident.drill else "")),
        ("stack recovering", f"{incident.stack} in {incident.region}"),
        ("incident started", utc_text(incident.started_at)),
        ("run", f"`{record.command}` by {record.operator}, started {utc_text(record.run_started_at)}"),
        ("run ended", utc_text(record.ended_at) if record.ended_at else "not recorded"),
        ("outcome", "OK" if record.ok else "FAILED"),
        ("RTO", _objective_line(figures.rto_seconds, objective.rto_seconds, "")),
        ("RPO", _objective_line(figures.rpo_seconds, objective.rpo_seconds, lost)),
        ("report", record.report_path or "not written"),
        ("log", record.log_path or "none"),
    ]
    return [_row("", ""), "|---|---|", *(_row(f"**{k}**", v) for k, v in rows)]


def _timeline(record: RunRecord) -> list[str]:
    events: list[tuple[datetime, list[object]]] = []
    for s in record.steps:
        start = record.at(s.start_seconds)
        took = "done by an earlier run" if s.resumed else duration_text(s.seconds or 0.0)
        result = "ok" if s.ok else f"FAILED: {s.error}"
        events.append((start, [s.name, took, result]))
    for n in record.notices:
        result = f"sent ({n.detail})" if n.sent else f"NOT SENT: {n.detail}"
        what = "notification" if n.channel == INCIDENT_TOPIC else n.channel
        events.append((n.at, [f"{what}: {n.kind.value}", "", result]))
    if not events:
        return ["No step was recorded."]
    lines = [_row("time", "since incident", "checklist phase", "what", "took", "result"), "|---|---|---|---|---|---|"]
    for moment, cells in sorted(events, key=lambda e: e[0]):
        since = record.since_incident(moment)
        lines.append(_row(utc_text(moment), offset_text(since), checklist_phase(since), *cells))
    return lines


def _phases(record: RunRecord) -> list[str]:
    if not record.phases:
        total = record.figures.rto_seconds
        return ["Not split by phase for this run" + (f"; total {duration_text(total)}." if total is not None else ".")]
    lines = [_row("phase", "took", "how"), "|---|---|---|"]
    lines += [_row(p.name, duration_text(p.seconds), p.how) for p in record.phases]
    return [*lines, _row("**total**", duration_text(sum(p.seconds for p in record.phases)), "")]


def _checks(record: RunRecord) -> list[str]:
    if not record.checks:
        return ["No check was recorded."]
    lines = [_row("check", "outcome", "detail", "value", "limit"), "|---|---|---|---|---|"]
    for c in record.checks:
        lines.append(_row(c.name, c.outcome.upper(), c.detail, "" if c.value is None else c.value,
                          "" if c.limit is None else c.limit))  # fmt: skip
    return lines


def _checklist(record: RunRecord) -> list[str]:
    lines = []
    for phase in CHECKLIST:
        lines += ["", f"### {phase.title} ({phase.window})", ""]
        for item in phase.items:
            judge = EVIDENCE.get(item)
            if judge is None:
                lines.append(f"- [ ] {item}")
                continue
            evidence = judge(record)
            lines.append(
                f"- [{'x' if evidence.done else ' '}] {item}: {evidence.note}{_against(record, phase, evidence)}"
            )
    return lines


def record_markdown(record: RunRecord, settings: Settings) -> str:
    """The incident record of `record` in Markdown (objectives from `settings`)."""
    incident = record.incident
    title = f"# Incident record: {incident.scenario} on {incident.stack}"
    lines = [title + (" (DRILL)" if incident.drill else ""), ""]
    if incident.drill:
        lines += ["**DRILL**: a rehearsal on purpose, not a real outage.", ""]
    lines += _summary(record, settings)
    lines += ["", "## Timeline", "", *_timeline(record)]
    lines += ["", "## Recovery time by phase", "", *_phases(record)]
    lines += ["", "## Checks", "", *_checks(record)]
    left = record.left_to_do
    lines += ["", "## Left to do", ""] + ([f"- [ ] {item}" for item in left] if left else ["Nothing the run knows of."])
    lines += ["", "## Runbook checklist, against the timeline", *_checklist(record)]
    lines += ["", "## Post-mortem", "", "- Root cause:", "- What went well:", "- What to change:", ""]
    return "\n".join(lines)
