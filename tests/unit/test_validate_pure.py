"""The pure parts of scripts.validate and its checks: times, RPO, percentiles, the --against target, broker probe."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
import yaml

from drtopo.checks.db import parse_time, rpo_check, rpo_seconds
from drtopo.checks.kafka import unreachable
from drtopo.checks.service import percentile
from drtopo.checks.validate import against_conninfo
from drtopo.report import BadInput, Report
from drtopo.settings import REPO_DIR, stacks
from scripts.validate import main


def test_parse_time_needs_an_offset() -> None:
    assert parse_time("2026-11-27T10:00:00Z") == datetime(2026, 11, 27, 10, tzinfo=UTC)
    with pytest.raises(BadInput, match="no UTC offset"):
        parse_time("2026-11-27T10:00:00")
    with pytest.raises(BadInput, match="'yesterday' is not a time"):
        parse_time("yesterday")


def test_rpo_is_the_gap_to_the_newest_record_before_the_disaster() -> None:
    disaster = datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert rpo_seconds(disaster - timedelta(seconds=42.5), disaster) == 42.5
    assert rpo_seconds(disaster, disaster) == 0.0
    assert rpo_seconds(None, disaster) is None


def _answering(newest: datetime | None) -> mock.MagicMock:
    """A connection whose one query answers max(created_at) = `newest` (None: no row at or before the time)."""
    conn = mock.MagicMock()
    conn.cursor.return_value.__enter__.return_value.fetchone.return_value = (newest,)
    return conn


@pytest.mark.parametrize(("age", "passed"), [(10.4985, True), (900.0, True), (1234.5, False)])
def test_db_rpo_names_its_figure_as_the_newest_row_s_age_not_data_lost(age: float, passed: bool) -> None:
    disaster = datetime(2026, 12, 2, 3, 23, 59, tzinfo=UTC)
    newest = disaster - timedelta(seconds=age)
    report = Report()
    conn = _answering(newest)
    rpo_check(report, conn, disaster, 900.0)
    (check,) = report.checks
    assert (check.name, check.ok, check.value, check.limit) == ("db.rpo", passed, round(age, 3), 900.0)
    assert check.detail == (
        f"newest record at or before 2026-12-02T03:23:59+00:00 is from {newest.isoformat()}: the age of the newest "
        "row at the disaster time (a bound on what a loss then could be), not data lost"
    )
    assert report.measured["rpo_seconds"] == age
    assert conn.cursor.return_value.__enter__.return_value.execute.call_args.args[1] == (disaster,)


def test_db_rpo_fails_when_no_row_is_at_or_before_the_disaster() -> None:
    disaster = datetime(2026, 12, 2, 3, 23, 59, tzinfo=UTC)
    report = Report()
    rpo_check(report, _answering(None), disaster, 900.0)
    (check,) = report.checks
    assert (check.name, check.ok, check.value, check.limit) == ("db.rpo", False, None, 900.0)
    assert check.detail == "no record at or before 2026-12-02T03:23:59+00:00"
    assert report.measured["rpo_seconds"] is None


def test_percentile_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert percentile(samples, 95) == 95.0
    assert percentile(samples, 100) == 100.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    with pytest.raises(ValueError):
        percentile([], 95)


def test_against_accepts_a_dsn_and_refuses_the_stack_itself_or_unknown_names() -> None:
    dsn = "postgresql://u@127.0.0.1:5432/db"
    assert against_conninfo(dsn, "dr", None) == dsn
    assert against_conninfo("host=127.0.0.1 dbname=db", "dr", None) == "host=127.0.0.1 dbname=db"
    with pytest.raises(BadInput, match="the stack being validated"):
        against_conninfo("dr", "dr", None)
    with pytest.raises(BadInput, match="'qa' is unknown"):
        against_conninfo("qa", "dr", None)


def test_unreachable_names_the_refusing_broker() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert unreachable(f"127.0.0.1:{port}") is None
    assert f"127.0.0.1:{port}" in (unreachable(f"127.0.0.1:{port}") or "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "soon"], "--since 'soon' is not a time"),
        (["--requests", "0"], "--requests 0 is too small"),
        (["--against", "staging"], "--against 'staging' is unknown"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "dr", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_any_stack_pair_is_accepted_and_an_unknown_stack_names_its_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for old, new, peer in (("prod", "staging", "staging-dr"), ("dr", "staging-dr", "staging")):
        document = yaml.safe_load((REPO_DIR / f"Pulumi.{old}.yaml").read_text())
        document["config"]["drtopo:peerStack"] = peer
        (tmp_path / f"Pulumi.{new}.yaml").write_text(yaml.safe_dump(document))
    assert stacks(tmp_path) == ("staging", "staging-dr")
    assert against_conninfo("host=127.0.0.1", "staging", None, tmp_path) == "host=127.0.0.1"
    with pytest.raises(BadInput, match="the stack being validated"):
        against_conninfo("staging", "staging", None, tmp_path)
    monkeypatch.setenv("DRTOPO_PROJECT_DIR", str(tmp_path))  # the command reads it; the library is handed it
    assert main(["--stack", "prod", "--skip", "service"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "Pulumi.prod.yaml" in err and "staging, staging-dr" in err
