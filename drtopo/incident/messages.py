"""The incident notifications: the stack's templates (drtopo:notifications.templates; defaults the runbook's)
filled in from an incident's facts.

`render(facts, settings)` returns the subject and body; it sends nothing. A drill's message says DRILL in its
subject and on its first and last lines whatever the templates say, so no reader takes a drill for an outage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from string import Template as TextTemplate

from drtopo.incident.facts import Facts, MessageKind, duration_text, utc_text
from drtopo.settings import Settings, Template

NOT_MEASURED = "not measured yet"
DRILL_SUBJECT = "DRILL - "
DRILL_FIRST_LINE = "DRILL: this is a recovery drill ({scenario} on {stack}), not a real outage. No action is needed."
DRILL_LAST_LINE = "DRILL: end of the drill's message."


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def estimated_recovery(facts: Facts, settings: Settings) -> str:
    """The objective's RTO from the incident's start: `4 h (by 2026-12-02 13:31:02 UTC)`."""
    rto = settings.objectives.for_scenario(facts.incident.scenario).rto_seconds
    by = facts.incident.started_at + timedelta(seconds=rto)
    return f"{duration_text(rto)} (by {utc_text(by)})"


def _measured(seconds: float | None) -> str:
    return NOT_MEASURED if seconds is None else duration_text(seconds)


def fields(facts: Facts, settings: Settings) -> dict[str, str]:
    """The value of every placeholder settings.TEMPLATE_FIELDS names, for these facts."""
    notifications, incident, figures = settings.notifications, facts.incident, facts.figures
    objective = settings.objectives.for_scenario(incident.scenario)
    return {
        "service": notifications.service_title,
        "scenario": incident.scenario,
        "stack": incident.stack,
        "region": incident.region,
        "impact": incident.impact or notifications.impact,
        "start_time": utc_text(incident.started_at),
        "time": utc_text(facts.at),
        "estimated_recovery": estimated_recovery(facts, settings),
        "status_page": notifications.status_page_url or "none (no drtopo:notifications.statusPageUrl)",
        "event": facts.event or "none",
        "objective_rto": duration_text(objective.rto_seconds),
        "objective_rpo": duration_text(objective.rpo_seconds),
        "measured_rto": _measured(figures.rto_seconds),
        "measured_rpo": _measured(figures.rpo_seconds),
        "rows_lost": NOT_MEASURED if figures.rows_lost is None else str(figures.rows_lost),
        "left_to_do": "; ".join(facts.left_to_do) or "none",
    }


def template_for(kind: MessageKind, settings: Settings) -> Template:
    return getattr(settings.notifications.templates, kind.value)


def render(facts: Facts, settings: Settings) -> Message:
    """The message of `facts` from the stack's template for its kind."""
    template = template_for(facts.kind, settings)
    values = fields(facts, settings)
    # Templates were checked when the settings loaded (known placeholders only), so substitute cannot miss one.
    subject = TextTemplate(template.subject).substitute(values)
    body = TextTemplate(template.body).substitute(values).rstrip("\n") + "\n"
    if facts.incident.drill:
        first = DRILL_FIRST_LINE.format(scenario=facts.incident.scenario, stack=facts.incident.stack)
        subject = DRILL_SUBJECT + subject
        body = f"{first}\n\n{body}\n{DRILL_LAST_LINE}\n"
    return Message(subject, body)
