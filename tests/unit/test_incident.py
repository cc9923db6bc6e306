"""drtopo.incident: the runbook's notifications filled in from an incident's facts, the incident record in Markdown
from a run's report, and the publisher's not-sent paths (a real botocore client whose endpoint refuses)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from drtopo import aws
from drtopo.incident.facts import Facts, Figures, Incident, MessageKind, duration_text, offset_text
from drtopo.incident.messages import DRILL_LAST_LINE, render
from drtopo.incident.publish import (
    SUBJECT_LIMIT,
    Delivery,
    Outbox,
    publish,
    record_notices,
    sns_message,
    sns_subject,
)
from drtopo.incident.record import (
    BEYOND,
    Notice,
    checklist_phase,
    record_markdown,
    run_record,
    steps_from_timeline,
)
from drtopo.report import Report
from drtopo.settings import Settings, load_settings

START = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-west-2:123456789012:drtopo-us-west-2-incidents"


@pytest.fixture(scope="module")
def dr() -> Settings:
    return load_settings("dr")


def incident(drill: bool = False, scenario: str = "region-failure") -> Incident:
    return Incident(scenario=scenario, stack="dr", region="us-west-2", started_at=START, drill=drill)


def test_start_is_the_runbook_template_filled_in(dr: Settings) -> None:
    message = render(Facts(MessageKind.START, incident(), START + timedelta(minutes=2)), dr)
    assert message.subject == "CRITICAL: Interface Exception Collector Service Outage"
    assert message.body == (
        "We are experiencing a critical outage with the Interface Exception Collector Service.\n"
        "\n"
        "Impact: Exception processing is currently unavailable\n"
        "Start Time: 2026-12-02 09:00:00 UTC\n"
        "Estimated Recovery: 4 h (by 2026-12-02 13:00:00 UTC)\n"
        "Status Page: https://status.biopro.com\n"
        "\n"
        "We are actively working on recovery and will provide updates every 30 minutes.\n"
    )


def test_estimated_recovery_follows_the_scenarios_objective(dr: Settings) -> None:
    message = render(Facts(MessageKind.START, incident(scenario="kafka-cluster-failure"), START), dr)
    assert "Estimated Recovery: 1 h (by 2026-12-02 10:00:00 UTC)\n" in message.body


def test_update_names_the_event_and_its_time(dr: Settings) -> None:
    at = START + timedelta(minutes=7, seconds=30)
    message = render(Facts(MessageKind.UPDATE, incident(), at, event="promote: the database is promoted"), dr)
    assert message.subject == "UPDATE: Interface Exception Collector Service Outage"
    assert "Update: promote: the database is promoted\nTime: 2026-12-02 09:07:30 UTC\n" in message.body


def test_resolution_names_the_measured_figures_and_what_is_left(dr: Settings) -> None:
    facts = Facts(
        MessageKind.RESOLUTION,
        incident(),
        START + timedelta(minutes=3, seconds=12),
        figures=Figures(rto_seconds=192.4, rpo_seconds=1.5, rows_lost=0),
        left_to_do=("pulumi up -s dr", "pulumi up -s prod"),
    )
    body = render(facts, dr).body
    assert "Resolution Time: 2026-12-02 09:03:12 UTC\n" in body
    assert "Recovery Time (RTO): 3 min 12 s (objective 4 h)\n" in body
    assert "Data Loss (RPO): 1.5 s (objective 15 min), rows lost: 0\n" in body
    assert "left to do: pulumi up -s dr; pulumi up -s prod\n" in body


def test_figures_not_measured_say_so(dr: Settings) -> None:
    body = render(Facts(MessageKind.RESOLUTION, incident(), START), dr).body
    assert "Recovery Time (RTO): not measured yet (objective 4 h)" in body
    assert "rows lost: not measured yet" in body and "left to do: none" in body


@pytest.mark.parametrize("kind", list(MessageKind))
def test_a_drill_says_drill_plainly_whatever_the_template(kind: MessageKind) -> None:
    quiet = {"subject": "$service", "body": "All good: $event"}
    templates = {k.value: quiet for k in MessageKind}
    settings = load_settings("dr", overrides={"notifications": {"templates": templates}})
    message = render(Facts(kind, incident(drill=True), START, event="step dns failed"), settings)
    assert message.subject == "DRILL - Interface Exception Collector Service"
    assert message.body.startswith(
        "DRILL: this is a recovery drill (region-failure on dr), not a real outage. No action is needed.\n\n"
    )
    assert message.body.endswith(f"\n{DRILL_LAST_LINE}\n")
    real = render(Facts(kind, incident(drill=False), START, event="step dns failed"), settings)
    assert "DRILL" not in real.subject + real.body


def test_overridden_templates_and_impact_are_used() -> None:
    overrides = {
        "notifications": {
            "impact": "Exceptions are queued, not processed",
            "templates": {"start": {"subject": "SEV1 $scenario in $region", "body": "$impact since $start_time"}},
        }
    }
    settings = load_settings("dr", overrides=overrides)
    message = render(Facts(MessageKind.START, incident(), START), settings)
    assert message == type(message)("SEV1 region-failure in us-west-2", "Exceptions are queued, not processed since "
                                    "2026-12-02 09:00:00 UTC\n")  # fmt: skip
    assert (
        "Status Page: none (no drtopo:notifications.statusPageUrl)"
        in render(Facts(MessageKind.UPDATE, incident(), START, event="x"), settings).body
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Incident("meteor", "dr", "us-west-2", START), "scenario 'meteor' is unknown; expected one of"),
        (lambda: Incident("region-failure", "dr", "us-west-2", datetime(2026, 12, 2)), "has no time zone"),
        (lambda: Facts(MessageKind.UPDATE, incident(), START, event=" "), "an update has no event"),
    ],
    ids=["unknown-scenario", "naive-time", "update-without-event"],
)
def test_facts_refuse_what_would_mislead(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_times_are_utc_whatever_zone_they_come_in(dr: Settings) -> None:
    later = START.astimezone(timezone(timedelta(hours=-8)))
    message = render(Facts(MessageKind.START, incident(), later), dr)
    assert "Start Time: 2026-12-02 09:00:00 UTC" in message.body


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (12.34, "12.3 s"), (60, "1 min"), (125, "2 min 5 s"), (3600, "1 h"), (3900, "1 h 5 min"),
     (14400, "4 h")],
)  # fmt: skip
def test_durations_as_people_say_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_offsets() -> None:
    assert offset_text(timedelta(seconds=192)) == "+0:03:12"
    assert offset_text(timedelta(hours=5, seconds=1)) == "+5:00:01"
    assert offset_text(timedelta(seconds=-5)) == "-0:00:05"


# The incident record.

CLOCK_STEPS = [
    {"step": "preflight", "start_seconds": 0.0, "seconds": 1.5, "ok": True},
    {"step": "promote", "start_seconds": 1.5, "seconds": 20.0, "ok": True},
    {"step": "dns", "start_seconds": 21.5, "seconds": 2.0, "ok": False, "error": "Route53 | throttled"},
]
RUNNER_STEPS = [
    {"step": "preflight", "resumed": True, "at_seconds": 0.2},
    {"step": "fence", "seconds": 3.0, "at_seconds": 3.5},
]


def test_steps_from_either_timeline_shape() -> None:
    clock = steps_from_timeline(CLOCK_STEPS)
    assert [(s.name, s.start_seconds, s.seconds, s.ok) for s in clock] == [
        ("preflight", 0.0, 1.5, True),
        ("promote", 1.5, 20.0, True),
        ("dns", 21.5, 2.0, False),
    ]
    assert clock[2].error == "Route53 | throttled"
    runner = steps_from_timeline(RUNNER_STEPS)
    assert [(s.name, s.start_seconds, s.seconds, s.resumed) for s in runner] == [
        ("preflight", 0.2, None, True),
        ("fence", 0.5, 3.0, False),
    ]


@pytest.mark.parametrize(
    ("minutes", "phase"),
    [(-1, "Immediate Response"), (0, "Immediate Response"), (14.9, "Immediate Response"),
     (15, "Short-term Response"), (59, "Short-term Response"), (60, "Recovery Phase"), (239, "Recovery Phase"),
     (240, BEYOND)],
)  # fmt: skip
def test_checklist_phases_by_time_since_the_incident(minutes: float, phase: str) -> None:
    assert checklist_phase(timedelta(minutes=minutes)) == phase


def drill_report() -> Report:
    report = Report(log="/var/log/drtopo/drill.log")
    report.check("region-failure RTO", True, "3 min 12 s", value=192.0, limit=14400)
    report.skip("kafka lag", "no MirrorMaker in this region")
    report.measured.update(
        steps=CLOCK_STEPS[:2],
        rto_seconds=30.0,
        client_rto_seconds=192.0,
        rpo_seconds=1.5,
        rows_lost=0,
        phases=[
            {"name": "detection", "seconds": 30.0, "how": "modelled: 3 checks 10 s apart"},
            {"name": "action", "seconds": 162.0, "how": "measured on the lab"},
        ],
    )
    return report


def drill_record(**changes: object) -> str:
    run_started = START + timedelta(minutes=2)
    record = run_record(
        drill_report(),
        incident=incident(drill=True),
        command="python -m scripts.drill --scenario region-failure",
        operator="alice@bastion-1",
        run_started_at=run_started,
        ended_at=run_started + timedelta(minutes=20),
        notices=(
            Notice(MessageKind.START, START + timedelta(minutes=2), True, "msg-1"),
            Notice(MessageKind.RESOLUTION, START + timedelta(minutes=22), False, "Could not connect"),
        ),
        report_path=".lab/drill-report.json",
    )
    return record_markdown(record, load_settings("dr"))


def test_the_record_summary_names_who_ran_what_and_the_figures_against_the_objectives() -> None:
    text = drill_record()
    assert text.startswith("# Incident record: region-failure on dr (DRILL)\n\n**DRILL**: a rehearsal on purpose")
    assert "| **run** | `python -m scripts.drill --scenario region-failure` by alice@bastion-1, started " \
           "2026-12-02 09:02:00 UTC |" in text  # fmt: skip
    assert "| **RTO** | 3 min 12 s (objective 4 h): met |" in text
    assert "| **RPO** | 1.5 s (objective 15 min): met; rows lost: 0 |" in text
    assert "| **log** | /var/log/drtopo/drill.log |" in text


def test_the_record_timeline_has_times_offsets_and_checklist_phases() -> None:
    text = drill_record()
    assert "| 2026-12-02 09:02:00 UTC | +0:02:00 | Immediate Response | preflight | 1.5 s | ok |" in text
    assert "| 2026-12-02 09:02:01 UTC | +0:02:01 | Immediate Response | promote | 20 s | ok |" in text
    assert "| 2026-12-02 09:22:00 UTC | +0:22:00 | Short-term Response | notification: resolution |  | " \
           "NOT SENT: Could not connect |" in text  # fmt: skip
    assert "| detection | 30 s | modelled: 3 checks 10 s apart |" in text
    assert "| **total** | 3 min 12 s |  |" in text


def test_the_record_marks_the_runbook_checklist_against_the_timeline() -> None:
    text = drill_record()
    assert "### Immediate Response (0 min - 15 min)" in text
    assert (
        "- [x] Notify stakeholders via incident response channel: start notification sent to the incident topic "
        "at 2026-12-02 09:02:00 UTC (+0:02:00)"
    ) in text
    assert "- [ ] Update status page with incident information: by hand" in text
    assert "- [x] Execute appropriate recovery procedure: `python -m scripts.drill --scenario region-failure` by " \
           "alice@bastion-1 at 2026-12-02 09:02:00 UTC (+0:02:00)" in text  # fmt: skip
    # Recovered at +0:22:00: well within the recovery phase's 4 h.
    assert "- [x] Complete system recovery: every step done at 2026-12-02 09:22:00 UTC (+0:22:00)" in text
    # A skipped check is not a pass: the services are not shown verified.
    assert "- [ ] Verify all services are operational: 1 checks passed, 0 failed, 1 skipped" in text
    assert "- [ ] Update stakeholders on resolution: resolution notification not sent: Could not connect" in text
    assert "### Post-Incident (after recovery)\n\n- [ ] Conduct post-mortem analysis" in text


def test_a_late_item_says_it_came_after_its_window() -> None:
    report = drill_report()
    record = run_record(
        report,
        incident=incident(),
        command="python -m scripts.promote --stack dr",
        operator="bob@laptop",
        run_started_at=START + timedelta(minutes=40),
        notices=(Notice(MessageKind.START, START + timedelta(minutes=40), True, "m"),),
    )
    text = record_markdown(record, load_settings("dr"))
    assert "(+0:40:00, after its window ended at +15 min)" in text
    assert "(DRILL)" not in text and "DRILL" not in text


def test_a_failed_run_lists_what_is_left() -> None:
    report = Report()
    report.check("dns", False, "Route53 throttled")
    report.measured.update(steps=CLOCK_STEPS, left_to_do=["dns", "scale_down_old"])
    record = run_record(
        report, incident=incident(), command="python -m scripts.promote --stack dr", operator="bob@laptop",
        run_started_at=START,
    )  # fmt: skip
    text = record_markdown(record, load_settings("dr"))
    assert "| **outcome** | FAILED |" in text
    assert "| **RTO** | not measured (objective 4 h) |" in text
    assert "| dns | 2 s | FAILED: Route53 \\| throttled |" in text
    assert "## Left to do\n\n- [ ] dns\n- [ ] scale_down_old\n" in text
    assert "- [ ] Complete system recovery: not complete: dns, scale_down_old" in text
    assert "Not split by phase for this run." in text


# The publisher: what SNS accepts, and never a raise.


def test_subjects_become_what_sns_accepts() -> None:
    assert sns_subject("DRILL \u2014 CRITICAL:\n  outage \u00e9") == "DRILL - CRITICAL: outage ?"
    long = sns_subject("x" * 300)
    assert len(long) == SUBJECT_LIMIT and long.endswith("...")


def test_long_messages_are_cut_and_say_so() -> None:
    assert sns_message("short") == "short"
    cut = sns_message("\u00e9" * 200_000)
    assert len(cut.encode()) <= 256 * 1024 and cut.endswith("[truncated: the message was longer than SNS accepts]\n")


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    """A loopback port bound but not listening: every connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def sns(region: str, endpoint: str) -> object:
    return aws.client("sns", region, endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s")


def message() -> object:
    return render(Facts(MessageKind.START, incident(), START), load_settings("dr"))


def test_an_unreachable_region_is_not_sent_and_does_not_raise(refusing_endpoint: str) -> None:
    delivery = publish(sns("us-west-2", refusing_endpoint), TOPIC, message())  # type: ignore[arg-type]
    assert not delivery.sent and delivery.topic_arn == TOPIC
    assert "Could not connect to the endpoint URL" in delivery.detail and "\n" not in delivery.detail


@pytest.mark.parametrize(
    ("topic", "detail"),
    [
        (None, "no incident topic in the stack outputs (incidentTopicArn); run pulumi up"),
        ("drtopo-us-west-2-incidents", "'drtopo-us-west-2-incidents' is not an SNS topic ARN"),
        (
            "arn:aws:sns:us-east-1:123456789012:drtopo-us-east-1-incidents",
            "the topic is in us-east-1 but the client in us-west-2; expected the same region",
        ),
    ],
    ids=["no-topic", "not-an-arn", "other-region"],
)
def test_what_is_not_sent_says_why(refusing_endpoint: str, topic: str | None, detail: str) -> None:
    # The endpoint refuses: had publish tried, the reason would be the connection, not this one.
    delivery = publish(sns("us-west-2", refusing_endpoint), topic, message())  # type: ignore[arg-type]
    assert delivery == Delivery(False, topic or "", detail)


def test_an_outbox_keeps_what_was_not_sent_and_tries_it_first(refusing_endpoint: str) -> None:
    outbox = Outbox(sns("us-west-2", refusing_endpoint), TOPIC)  # type: ignore[arg-type]
    resolution = render(Facts(MessageKind.RESOLUTION, incident(), START), load_settings("dr"))
    first = outbox.post(MessageKind.START, message(), START)  # type: ignore[arg-type]
    assert [(n.kind, n.at, n.sent) for n in first] == [(MessageKind.START, START, False)]
    later = START + timedelta(minutes=5)
    second = outbox.post(MessageKind.RESOLUTION, resolution, later)
    # The start is tried again first; the resolution waits behind it rather than overtake it.
    assert [(n.kind, n.at, n.sent) for n in second] == [(MessageKind.START, later, False)]
    assert [kind for kind, _ in outbox.pending] == [MessageKind.START, MessageKind.RESOLUTION]
    assert "Could not connect to the endpoint URL" in second[0].detail


def test_attempts_are_checks_and_not_sent_is_a_skip_never_a_failure() -> None:
    report = Report()
    record_notices(
        report,
        [
            Notice(MessageKind.START, START, False, "Could not connect to the endpoint URL"),
            Notice(MessageKind.START, START, True, "msg-1"),
        ],
    )
    assert [(c.name, c.outcome, c.detail) for c in report.checks] == [
        ("notify start", "skip", "not sent: Could not connect to the endpoint URL (tried again at the next step)"),
        ("notify start", "pass", "sent to the incident topic (message msg-1)"),
    ]
    assert report.ok
