"""A recovery command's notifier (drtopo/incident/notify.py): a command the drill runs says DRILL in its messages
and its record, a dry run sends and reports nothing, a message not sent is a SKIP and waits behind the first one not
sent, a failed cutover ends on an update, and the record lands beside the JSON report. The SNS client is a real
botocore client whose endpoint (a loopback port bound but not listening) refuses every connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drtopo.context import Context
from drtopo.incident.facts import Incident, MessageKind
from drtopo.incident.notify import Notifier, cutover_ended, cutover_notifier, record_path
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report
from drtopo.settings import REPO_DIR, load_settings
from scripts.drill import report as drill_report
from scripts.drill.report import ScenarioResult, scenario_record
from scripts.drill.run import lab_context

TOPIC = "arn:aws:sns:us-west-2:123456789012:drtopo-us-west-2-incidents"


@pytest.fixture
def refusing_sns(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every SNS client the notifier makes reaches a loopback port that refuses at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
        yield endpoint


class _LabFolders:
    """What lab_context reads of a lab: its project copy and its environment file's variables."""

    def __init__(self, root: Path) -> None:
        self.project_dir = REPO_DIR
        self.root = root

    def env(self) -> dict[str, str]:
        return {"DRTOPO_LAB_DIR": str(self.root)}


def dr_outputs() -> StackOutputs:
    return StackOutputs.model_construct(stack="dr", region="us-west-2", incident_topic_arn=TOPIC)


def test_a_cutover_the_drill_runs_is_a_drill_in_its_report_and_its_record(refusing_sns: str, tmp_path: Path) -> None:
    ctx = lab_context(Context(), _LabFolders(tmp_path))  # type: ignore[arg-type]
    assert ctx.drill
    report = Report()
    notifier = cutover_notifier(dr_outputs(), ctx, report, command="python -m scripts.restore pitr", operator="me@x")
    assert notifier.incident.drill and notifier.incident.scenario == "database-corruption"
    assert notifier.incident.region == "us-west-2"

    notifier.send(MessageKind.START)
    report.measured["damaged_kept"] = "/srv/pg/dr-damaged"
    cutover_ended(notifier, Clock())

    # The start was refused twice (at its turn, then first again); the resolution waits behind it.
    assert [(c.name, c.outcome) for c in report.checks] == [
        ("notify start", "skip"),
        ("notify start", "skip"),
        ("notify resolution", "skip"),
    ]
    assert "Could not connect to the endpoint URL" in report.checks[0].detail
    assert report.checks[2].detail.startswith("not sent: queued behind the start message")
    assert report.ok  # a notification never fails the recovery
    assert report.measured["left_to_do"] == [
        "delete the damaged database kept at /srv/pg/dr-damaged once the post-mortem is done"
    ]
    written = notifier.write_record(tmp_path / "cutover.json")
    assert written == record_path(tmp_path / "cutover.json") == tmp_path / "cutover.md"
    text = written.read_text()
    assert text.splitlines()[0].endswith("(DRILL)") and "python -m scripts.restore pitr" in text
    assert "me@x" in text and "/srv/pg/dr-damaged" in text


def test_a_failed_cutover_ends_on_an_update_not_a_resolution(refusing_sns: str) -> None:
    report = Report()
    notifier = cutover_notifier(dr_outputs(), Context(), report)
    report.check("pitr", False, "the restored instance did not start")
    cutover_ended(notifier, Clock())
    assert [kind for kind, _ in notifier.outbox.pending] == [MessageKind.UPDATE]  # type: ignore[union-attr]
    assert "the cutover failed (pitr)" in notifier.outbox.pending[0][1].body  # type: ignore[union-attr]
    assert not notifier.incident.drill and "rto_seconds" not in report.measured


def test_a_dry_run_sends_nothing_and_reports_nothing_sent(refusing_sns: str, tmp_path: Path) -> None:
    report = Report()
    incident = Incident("region-failure", "dr", "us-west-2", datetime.now(UTC))
    notifier = Notifier.open(incident, load_settings("dr"), report, TOPIC, send_nothing=True)
    notifier.send(MessageKind.START)
    notifier.retry("preflight")
    assert notifier.outbox is None and notifier.notices == [] and report.checks == []
    assert notifier.write_record(None) is None
    assert notifier.write_record(tmp_path / "dry.json") == tmp_path / "dry.md"


def test_without_a_topic_in_the_outputs_each_message_says_so(refusing_sns: str) -> None:
    report = Report()
    incident = Incident("region-failure", "dr", "us-west-2", datetime.now(UTC))
    notifier = Notifier.open(incident, load_settings("dr"), report, None)
    notifier.send(MessageKind.START)
    assert [(c.name, c.outcome) for c in report.checks] == [("notify start", "skip")]
    assert "no incident topic in the stack outputs (incidentTopicArn)" in report.checks[0].detail


def test_every_drill_scenario_leaves_a_record_marked_drill_with_its_figures(tmp_path: Path) -> None:
    started = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)
    result = ScenarioResult(scenario="region-failure", objective_rto_seconds=14400, objective_rpo_seconds=900)
    result.steps = [
        {"step": "kill prod", "start_seconds": 0.5, "seconds": 0.2, "ok": True, "error": ""},
        {"step": "scripts.promote --stack dr", "start_seconds": 1.0, "seconds": 9.5, "ok": True, "error": ""},
    ]
    result.measured.rto_seconds, result.measured.rpo_seconds, result.measured.rows_lost = 11.0, 0.4, 2
    result.phases = [{"phase": "action", "seconds": 9.5, "how": "measured"}]
    result.measured.client_rto_seconds = 9.5
    result.checks.check("post-recovery validation", True, "exit code 0")
    assert scenario_record(result, load_settings("prod"), command="c", operator="o") is None  # never started

    result.incident = Incident("region-failure", "dr", "us-west-2", started, drill=True)
    result.started_at = started
    text = scenario_record(result, load_settings("prod"), command="python -m scripts.drill", operator="me@x")

    assert text is not None and text.splitlines()[0].endswith("(DRILL)")
    assert "**DRILL**" in text and "python -m scripts.drill" in text and "me@x" in text
    assert "scripts.promote --stack dr" in text and "2026-12-02 09:00:01 UTC" in text
    assert "9.5 s" in text and "post-recovery validation" in text
    assert drill_report.record_path(tmp_path / "drill.json", "region-failure") == tmp_path / "drill-region-failure.md"


def test_a_scenario_that_broke_says_so_in_its_record() -> None:
    started = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)
    result = ScenarioResult(scenario="configuration-loss", objective_rto_seconds=1800, objective_rpo_seconds=0)
    result.incident = Incident("configuration-loss", "prod", "us-east-1", started, drill=True)
    result.started_at = started
    result.error = "RuntimeError: kubectl apply failed"
    text = scenario_record(result, load_settings("prod"), command="c", operator="o")
    assert text is not None and "RuntimeError: kubectl apply failed" in text and "FAILED" in text
