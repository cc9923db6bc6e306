"""The status page (drtopo/incident/statuspage.py, drtopo:notifications.statusPage): the requests match the Statuspage
incidents API as documented (written out below), bad settings stop in one line naming the value, and a status page
that cannot be reached, or whose key is not set, is a SKIP with the reason, tried again at the next step, never with
the key in a reason or a log line. The API is reached through real sockets on loopback: a port bound but not
listening (refuses at once) and a port listening but never answering (the timeout). The sent path against the real
Statuspage is not shown here (no emulator of it exists on these machines; docs/notifications.md says how to try it)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from drtopo.context import Context
from drtopo.incident.facts import Incident, MessageKind
from drtopo.incident.messages import Message
from drtopo.incident.notify import Notifier
from drtopo.incident.record import STATUS_PAGE, record_markdown, run_record
from drtopo.incident.statuspage import (
    MONITORING,
    PageOutbox,
    create_request,
    page_request,
    send,
    update_request,
)
from drtopo.report import Report
from drtopo.settings import Settings, SettingsError, StatusPage, load_settings
from scripts.cli import context_from_environment, environment_secret

KEY = "89a229ce1a8dbcf9ff30430fbe35eb4c0426574bca932061892cefd2138aa4b1"
PAGE = StatusPage(page_id="gytm4qzbx9t6", token_variable="DRTOPO_STATUSPAGE_KEY")
START = Message("CRITICAL: Interface Exception Collector Service Outage", "We are experiencing a critical outage.\n")
UPDATE = Message("UPDATE: Interface Exception Collector Service Outage", "Update: promote done.\n")
RESOLVED = Message("RESOLVED: Interface Exception Collector Service Restored", "Restored. RTO 9.5 s.\n")
HEADERS = {"Authorization": f"OAuth {KEY}", "Content-Type": "application/json", "Accept": "application/json"}
AT = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)


def test_the_start_creates_an_investigating_incident_named_by_the_subject() -> None:
    request = create_request(PAGE, KEY, START)
    assert (request.method, request.url) == ("POST", "https://api.statuspage.io/v1/pages/gytm4qzbx9t6/incidents")
    assert request.headers == HEADERS
    assert request.data() == (
        b'{"incident": {"name": "CRITICAL: Interface Exception Collector Service Outage", '
        b'"status": "investigating", "body": "We are experiencing a critical outage.\\n"}}'
    )
    assert page_request(PAGE, KEY, MessageKind.START, START, None) == request


@pytest.mark.parametrize(
    ("kind", "message", "status", "expected"),
    [
        (MessageKind.UPDATE, UPDATE, "identified", {"incident": {"status": "identified", "body": UPDATE.body}}),
        (MessageKind.UPDATE, UPDATE, MONITORING, {"incident": {"status": "monitoring", "body": UPDATE.body}}),
        (MessageKind.RESOLUTION, RESOLVED, "identified", {"incident": {"status": "resolved", "body": RESOLVED.body}}),
    ],
)
def test_an_update_or_the_resolution_patches_the_incident(
    kind: MessageKind, message: Message, status: str, expected: dict[str, Any]
) -> None:
    request = page_request(PAGE, KEY, kind, message, "p31zjtct2jer", status)
    assert (request.method, request.url) == (
        "PATCH",
        "https://api.statuspage.io/v1/pages/gytm4qzbx9t6/incidents/p31zjtct2jer",
    )
    assert request.headers == HEADERS and json.loads(request.data()) == expected


def test_the_builders_refuse_what_the_api_has_no_shape_for_and_never_show_the_key() -> None:
    with pytest.raises(ValueError, match="needs the incident's id; the start creates it"):
        page_request(PAGE, KEY, MessageKind.UPDATE, UPDATE, None)
    with pytest.raises(ValueError, match="status 'investigating'; expected one of identified, monitoring, resolved"):
        update_request(PAGE, KEY, "p31zjtct2jer", UPDATE, "investigating")
    assert KEY not in repr(create_request(PAGE, KEY, START))
    custom = StatusPage(api_url="https://statuspage.internal.example/", page_id="abc", token_variable="K")
    assert create_request(custom, KEY, START).url == "https://statuspage.internal.example/v1/pages/abc/incidents"


def with_status_page(stack: str, **page: Any) -> dict[str, Any]:
    current = load_settings(stack).notifications.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"notifications": {**current, "statusPage": page}}


def test_the_shipped_stacks_have_no_status_page_and_one_is_read_with_its_default_api() -> None:
    assert load_settings("prod").notifications.status_page is None
    page = load_settings(
        "prod", overrides=with_status_page("prod", pageId="gytm4qzbx9t6", tokenVariable="DRTOPO_STATUSPAGE_KEY")
    ).notifications.status_page
    assert page == PAGE and page.api_url == "https://api.statuspage.io"


@pytest.mark.parametrize(
    ("page", "message"),
    [
        (
            {"apiUrl": "http://api.statuspage.io", "pageId": "abc", "tokenVariable": "K"},
            "Pulumi.prod.yaml: drtopo:notifications.statusPage.apiUrl = 'http://api.statuspage.io': expected an "
            "https:// URL of the Statuspage API with a host (e.g. https://api.statuspage.io)",
        ),
        (
            {"apiUrl": "https://", "pageId": "abc", "tokenVariable": "K"},
            "drtopo:notifications.statusPage.apiUrl = 'https://': expected an https:// URL",
        ),
        (
            {"pageId": "gytm/../x", "tokenVariable": "K"},
            "drtopo:notifications.statusPage.pageId = 'gytm/../x': expected the page's id (letters and digits",
        ),
        (
            {"pageId": "abc", "tokenVariable": KEY[:12] + "-" + KEY[12:20]},
            "drtopo:notifications.statusPage.tokenVariable = '89a229ce1a8d-bcf9ff30': expected the NAME of the "
            "environment variable holding the API key (letters, digits and _, not starting with a digit), never "
            "the key itself",
        ),
        (
            {"pageId": "abc", "tokenVariable": "1KEY"},
            "drtopo:notifications.statusPage.tokenVariable = '1KEY': expected the NAME of the environment variable",
        ),
        ({"pageId": "abc"}, "Pulumi.prod.yaml: drtopo:notifications.statusPage.tokenVariable is missing"),
        ({"tokenVariable": "K"}, "Pulumi.prod.yaml: drtopo:notifications.statusPage.pageId is missing"),
        (
            {"pageId": "abc", "tokenVariable": "K", "apiKey": "secret"},
            "drtopo:notifications.statusPage.apiKey = 'secret': Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_status_page_setting_stops_in_one_line(page: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings("prod", overrides=with_status_page("prod", **page))
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the backlog) and never answers: the TLS handshake waits."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        yield sock.getsockname()[1]


def loopback_page(port: int) -> StatusPage:
    return StatusPage(api_url=f"https://127.0.0.1:{port}", page_id="gytm4qzbx9t6", token_variable="DRTOPO_SP_KEY")


def test_a_refused_status_page_is_not_sent_with_the_reason_and_never_the_key(
    refusing_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    delivery = send(create_request(loopback_page(refusing_port), KEY, START))
    assert not delivery.sent
    assert delivery.detail.startswith(f"cannot reach the status page API at 127.0.0.1:{refusing_port}: ")
    assert "Connection refused" in delivery.detail
    assert KEY not in delivery.detail and KEY not in caplog.text and "not sent" in caplog.text


def test_a_status_page_that_never_answers_is_not_sent_after_the_timeout(silent_port: int) -> None:
    delivery = send(create_request(loopback_page(silent_port), KEY, START), timeout=0.3)
    assert not delivery.sent
    assert delivery.detail == f"the status page API at 127.0.0.1:{silent_port} did not answer within 0.3 s"
    assert KEY not in delivery.detail


def test_a_create_not_sent_stays_first_and_the_updates_wait_behind_it(refusing_port: int) -> None:
    outbox = PageOutbox(loopback_page(refusing_port), KEY)
    first = outbox.post(MessageKind.START, START, AT)
    second = outbox.post(MessageKind.UPDATE, UPDATE, AT, MONITORING)
    assert [(n.kind, n.sent, n.channel) for n in first + second] == [
        (MessageKind.START, False, STATUS_PAGE),
        (MessageKind.START, False, STATUS_PAGE),
    ]
    assert [(kind, status) for kind, _, status in outbox.pending] == [
        (MessageKind.START, "identified"),
        (MessageKind.UPDATE, MONITORING),
    ]
    assert outbox.incident_id is None and all(KEY not in n.detail for n in first + second)
    assert KEY not in repr(outbox)


def test_without_the_key_each_attempt_names_the_variable_and_nothing_is_dialled() -> None:
    outbox = PageOutbox(StatusPage(api_url="https://192.0.2.1", page_id="abc", token_variable="SP_KEY"), None)
    notices = outbox.post(MessageKind.START, START, AT)
    assert [(n.sent, n.detail) for n in notices] == [(False, "$SP_KEY is not set")]


def status_page_settings(port: int) -> Settings:
    page = {"apiUrl": f"https://127.0.0.1:{port}", "pageId": "gytm4qzbx9t6", "tokenVariable": "DRTOPO_SP_KEY"}
    return load_settings("dr", overrides=with_status_page("dr", **page))


def incident() -> Incident:
    return Incident("region-failure", "dr", "us-west-2", AT)


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({}, "not sent: $DRTOPO_SP_KEY is not set (tried again at the next step)"),
        ({"DRTOPO_SP_KEY": ""}, "not sent: $DRTOPO_SP_KEY is not set (tried again at the next step)"),
        ({"DRTOPO_SP_KEY": KEY}, "not sent: cannot reach the status page API at 127.0.0.1:"),
    ],
)
def test_a_run_reports_each_status_page_attempt_as_a_skip_and_retries_at_the_next_step(
    refusing_port: int, environ: dict[str, str], reason: str
) -> None:
    report = Report()
    ctx = context_from_environment(environ)
    notifier = Notifier.open(
        incident(), status_page_settings(refusing_port), report, None, command="promote", secret=ctx.secret
    )
    notifier.send(MessageKind.START)
    notifier.retry("guard")
    notifier.send(MessageKind.RESOLUTION)

    page_checks = [(c.name, c.outcome) for c in report.checks if c.name.startswith("status page")]
    assert page_checks == [("status page start", "skip")] * 3  # at its turn, at the next step, before the resolution
    assert all(c.detail.startswith(reason) for c in report.checks if c.name.startswith("status page"))
    assert all(KEY not in c.detail for c in report.checks)
    assert [kind for kind, _, _ in notifier.page.pending] == [MessageKind.START, MessageKind.RESOLUTION]  # type: ignore[union-attr]
    assert report.ok  # a status page never fails the recovery

    record = run_record(
        report, incident=notifier.incident, command="promote", operator="o", run_started_at=AT, notices=notifier.notices
    )
    assert sum(n.channel == STATUS_PAGE for n in record.notices) == 3
    text = record_markdown(record, notifier.settings)
    assert "status page: start" in text
    assert "NOT SENT: " + reason.removeprefix("not sent: ").split(" (tried")[0] in text


def test_the_point_of_no_return_moves_the_incident_to_monitoring_other_updates_to_identified(
    refusing_port: int,
) -> None:
    notifier = Notifier.open(incident(), status_page_settings(refusing_port), Report(), None)
    notifier.send(MessageKind.START)
    notifier.send(MessageKind.UPDATE, "step guard failed")
    notifier.send(MessageKind.UPDATE, "dr is promoted: the point of no return is passed", page_status=MONITORING)
    assert [(kind, status) for kind, _, status in notifier.page.pending] == [  # type: ignore[union-attr]
        (MessageKind.START, "identified"),
        (MessageKind.UPDATE, "identified"),
        (MessageKind.UPDATE, "monitoring"),
    ]


def test_a_dry_run_touches_no_status_page(refusing_port: int) -> None:
    report = Report()
    notifier = Notifier.open(
        incident(),
        status_page_settings(refusing_port),
        report,
        None,
        send_nothing=True,
        secret=environment_secret({"DRTOPO_SP_KEY": KEY}),
    )
    notifier.send(MessageKind.START)
    notifier.retry("guard")
    assert notifier.page is None and report.checks == [] and notifier.notices == []


def test_the_library_reads_no_environment_the_command_hands_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRTOPO_SP_KEY", KEY)
    assert Context().secret("DRTOPO_SP_KEY") is None
    assert context_from_environment().secret("DRTOPO_SP_KEY") == KEY
    assert environment_secret({"A": "x", "B": ""})("A") == "x"
    assert environment_secret({"A": "x", "B": ""})("B") is None
