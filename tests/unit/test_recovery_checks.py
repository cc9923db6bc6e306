"""The pure parts of the checks that tell a recovered stack from one that is not: the role verdict, the failover
record's verdict, whether a MirrorMaker 2 flow runs from its Connect status records, and the disaster time read
from promote's journal."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from drtopo.checks.disaster import is_promote_journal, last_contact
from drtopo.checks.recovery import judge_record, judge_role
from drtopo.kafka.flow import FlowState, latest_states, status_topic
from drtopo.kafka.offsets import Record
from drtopo.report import Report
from drtopo.settings import Role


def outcome(report: Report, name: str) -> tuple[str, str]:
    (check,) = [c for c in report.checks if c.name == name]
    return check.outcome, check.detail


@pytest.mark.parametrize(
    ("role", "expect", "want", "words"),
    [
        (Role.STANDBY, Role.PRIMARY, "fail", "dr is not primary: it is standby (drtopo:role in Pulumi.dr.yaml)"),
        (Role.PRIMARY, Role.PRIMARY, "pass", "dr is primary (drtopo:role in Pulumi.dr.yaml)"),
        (Role.STANDBY, Role.STANDBY, "pass", "dr is standby"),
        (Role.PRIMARY, Role.STANDBY, "fail", "dr is not standby: it is primary"),
    ],
)
def test_the_role_verdict_names_the_stack(role: Role, expect: Role, want: str, words: str) -> None:
    report = Report()
    assert judge_role(report, "dr", role, "drtopo:role in Pulumi.dr.yaml", expect) is (want == "pass")
    got, detail = outcome(report, "stack.role")
    assert got == want and words in detail, detail
    assert report.exit_code() == (0 if want == "pass" else 1)


@pytest.mark.parametrize(
    ("routing", "expect", "want"),
    [
        ({"us-west-2": "PRIMARY", "us-east-1": "SECONDARY"}, Role.PRIMARY, "pass"),
        ({"us-west-2": "SECONDARY", "us-east-1": "PRIMARY"}, Role.PRIMARY, "fail"),
        ({"us-west-2": "SECONDARY", "us-east-1": "PRIMARY"}, Role.STANDBY, "pass"),
        ({"us-west-2": "PRIMARY", "us-east-1": "SECONDARY"}, Role.STANDBY, "fail"),
        ({}, Role.STANDBY, "fail"),
    ],
)
def test_the_record_verdict_follows_the_expected_role(routing: dict[str, str], expect: Role, want: str) -> None:
    report = Report()
    judge_record(report, routing, "us-west-2", "api.example", expect)
    got, detail = outcome(report, "service.record")
    assert got == want, detail
    assert detail.startswith("api.example answers ")


def status(key: str, state: str | None, at: int = 0) -> Record:
    value = None if state is None else json.dumps({"state": state, "trace": None, "worker_id": "w"}).encode()
    return Record(key.encode(), value, at, status_topic("us-east-1"), 0)


RUNNING = [
    status("status-connector-MirrorSourceConnector", "RUNNING"),
    status("status-task-MirrorSourceConnector-0", "RUNNING"),
    status("status-task-MirrorSourceConnector-1", "RUNNING"),
    status("status-connector-MirrorCheckpointConnector", "RUNNING"),
]


@pytest.mark.parametrize(
    ("records", "running", "words"),
    [
        (RUNNING, True, "MirrorSourceConnector RUNNING, tasks 2 RUNNING"),
        # A worker that stops writes UNASSIGNED for what it ran: the newest record per key wins.
        (
            [
                *RUNNING,
                status("status-task-MirrorSourceConnector-0", "UNASSIGNED"),
                status("status-task-MirrorSourceConnector-1", "UNASSIGNED"),
                status("status-connector-MirrorSourceConnector", "UNASSIGNED"),
            ],
            False,
            "MirrorSourceConnector UNASSIGNED, tasks 2 UNASSIGNED",
        ),
        ([*RUNNING, status("status-task-MirrorSourceConnector-1", "FAILED")], False, "1 FAILED, 1 RUNNING"),
        ([*RUNNING, status("status-task-MirrorSourceConnector-0", None), RUNNING[2]], True, "tasks 1 RUNNING"),
        ([status("session-key", "x")], False, "MirrorSourceConnector never started, tasks no tasks"),
    ],
)
def test_a_flow_runs_only_while_its_source_connector_and_a_task_run(
    records: list[Record], running: bool, words: str
) -> None:
    state = FlowState("us-east-1->us-west-2", latest_states(records))
    assert state.running is running
    assert words in state.describe() and state.describe().startswith("flow us-east-1->us-west-2: ")


def test_an_unreadable_status_is_not_running() -> None:
    records = [*RUNNING, Record(b"status-task-MirrorSourceConnector-1", b"{not json", 0, "t", 0)]
    states = latest_states(records)
    assert states["task-MirrorSourceConnector-1"] == "UNREADABLE"
    assert FlowState("a->b", states).running  # one task still runs, none failed


@pytest.mark.parametrize(
    ("key", "own"),
    [
        ("journals/promote-dr.json", True),
        ("journals/promote-dr.20261202T131000.123+0000.json", True),
        ("journals/promote-dr.2.json", False),
        ("journals/promote-dr.2.20261202T131000.123+0000.json", False),
        ("journals/failback-dr.json", False),
    ],
)
def test_only_the_stacks_own_promote_journals_count(key: str, own: bool) -> None:
    assert is_promote_journal(key, "dr") is own


def test_the_disaster_time_is_the_guards_last_contact() -> None:
    journal = {
        "operation": "promote",
        "steps": {"guard": {"ok": True, "result": {"lag": {"last_contact": "2026-12-02T10:00:01.250000+00:00"}}}},
    }
    assert last_contact(journal) == datetime(2026, 12, 2, 10, 0, 1, 250000, tzinfo=UTC)
    # A promote whose old primary answered (a planned switchover) lost no region: no disaster time.
    answered = {"steps": {"guard": {"result": {"lag": {"last_contact": None, "seconds": 0.01}}}}}
    assert last_contact(answered) is None
    assert last_contact({"steps": {}}) is None
    with pytest.raises(ValueError):
        last_contact({"steps": {"guard": {"result": {"lag": {"last_contact": "yesterday"}}}}})
