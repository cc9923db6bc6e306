"""An RDS cutover's write-unavailability window (drtopo/database/rds.py `RdsDatabase.cutover`): writes are refused
from the start of the fence until the endpoint, renamed to the restored instance, takes a write; the report shows
that window as the self-managed cutover's does. The rename swap runs on moto's RDS; the restore, the re-apply passes
(which need two PostgreSQL servers) and the endpoint's answer are mocks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from drtopo.backup.restore import _cutover_report
from drtopo.database import platform
from drtopo.database import rds as rds_module
from drtopo.database.pitr.cutover import ReapplyOutcome, kept_identifier
from drtopo.database.pitr.request import PitrRequest
from drtopo.database.rds import RdsDatabase
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report
from tests.unit.test_database_platform import outputs

T = datetime(2026, 12, 2, 3, 23, 59, tzinfo=UTC)
RESTORED = "prod-db-pitr-20261202t032359z"
FENCED_FROM, FENCED_AT, WRITABLE_AT = 1_796_181_900.0, 1_796_181_901.2, 1_796_181_903.4


@pytest.fixture
def stack() -> Iterator[StackOutputs]:
    with mock_aws():
        rds = boto3.client("rds", region_name="eu-west-1")
        made = {}
        for name in ("prod-db", RESTORED):
            made[name] = rds.create_db_instance(
                DBInstanceIdentifier=name,
                DBInstanceClass="db.t3.micro",
                Engine="postgres",
                MasterUsername="app",
                MasterUserPassword="secret-password",
                AllocatedStorage=20,
            )["DBInstance"]
        yield outputs(made["prod-db"]["DBInstanceArn"], None)


def _outcome() -> ReapplyOutcome:
    passes = [{"copied_keys": {"interface_exceptions": [1, 2]}, "tables": []}]
    passes.append(
        {
            "copied_keys": {"interface_exceptions": [3]},
            "tables": [{"table": "interface_exceptions", "excluded_damage": 16666, "deleted_kept": 0}],
        }
    )
    return ReapplyOutcome(passes, {"proof": "write refused"}, FENCED_AT, None, FENCED_FROM)


def _cut_over(stack: StackOutputs, writable_at: float | None) -> Report:
    report = Report()
    restored = {"target_instance": RESTORED, "address": "restored.example", "port": 5432}
    request = PitrRequest(time=T, rds=True, cutover=True, damage_xids=(740,))
    with (
        mock.patch.object(RdsDatabase, "restore", return_value=restored),
        mock.patch.object(rds_module.cutover, "reapply_until_fenced", return_value=_outcome()),
        mock.patch.object(rds_module, "wait_writable", return_value=writable_at) as waited,
    ):
        assert RdsDatabase(stack).cutover(request, report, Clock(quiet=True)) == []
    waited.assert_called_once_with(stack, rds_module.WRITABLE_WAIT_SECONDS)
    return report


def test_an_rds_cutover_reports_writes_refused_from_the_fence_until_the_endpoint_takes_writes(
    stack: StackOutputs,
) -> None:
    report = _cut_over(stack, WRITABLE_AT)
    m = report.measured
    assert (m["fenced_from"], m["writable_at"], m["cutover_at"]) == (FENCED_FROM, WRITABLE_AT, WRITABLE_AT)
    assert m["swap"]["kept"] == kept_identifier("prod-db", T) and m["swap"]["serving"] == "prod-db"
    lines = _cutover_report(stack, None, report)
    assert m["write_unavailable"] == {
        "from": datetime.fromtimestamp(FENCED_FROM, UTC).isoformat(),
        "to": datetime.fromtimestamp(WRITABLE_AT, UTC).isoformat(),
        "seconds": 3.4,
    }
    window = [line for line in lines if line.startswith("writes refused for")]
    assert window == [
        f"writes refused for 3.4 s: fenced {m['write_unavailable']['from']}, "
        f"writable again {m['write_unavailable']['to']}"
    ]
    assert all(c.ok for c in report.checks)


def test_an_endpoint_that_takes_no_write_fails_a_check_and_shows_no_window(stack: StackOutputs) -> None:
    report = _cut_over(stack, None)
    failed = [c for c in report.checks if not c.ok]
    assert [c.name for c in failed] == ["writable"]
    assert "took no write within 300 s of the swap" in failed[0].detail
    assert report.measured["writable_at"] is None and "cutover_at" in report.measured
    lines = _cutover_report(stack, None, report)
    assert report.measured["write_unavailable"] is None
    assert not [line for line in lines if line.startswith("writes refused for")]


class _Session:
    """A session whose one query answers (in recovery, default_transaction_read_only)."""

    def __init__(self, answer: tuple[bool, str]) -> None:
        self.answer = answer

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def execute(self, query: str) -> mock.Mock:
        assert "pg_is_in_recovery()" in query
        return mock.Mock(fetchone=mock.Mock(return_value=self.answer))


def test_wait_writable_waits_past_refused_sessions_and_read_only_until_a_write_may_go_through() -> None:
    answers: list[Any] = [
        platform.psycopg.OperationalError("could not translate host name"),
        _Session((False, "on")),
        _Session((True, "off")),
        _Session((False, "off")),
    ]
    with (
        mock.patch.object(platform, "connect", side_effect=answers) as connect,
        mock.patch.object(platform.time, "sleep") as slept,
    ):
        at = platform.wait_writable(mock.Mock(), timeout_s=60, poll_s=2)
    assert at is not None and abs(at - datetime.now(UTC).timestamp()) < 5
    assert connect.call_count == 4 and slept.call_count == 3


def test_wait_writable_gives_up_after_its_timeout() -> None:
    with (
        mock.patch.object(platform, "connect", return_value=_Session((False, "on"))),
        mock.patch.object(platform.time, "sleep"),
        mock.patch.object(platform.time, "monotonic", side_effect=[0.0, 1.0, 3.0, 5.0, 7.0]),
    ):
        assert platform.wait_writable(mock.Mock(), timeout_s=5, poll_s=2) is None
