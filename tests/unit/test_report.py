"""The report every command writes: a skip is its own outcome, counted apart, never a pass; --strict fails on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drtopo.report import Report
from scripts.cli import finish


def a_report() -> Report:
    report = Report()
    report.check("db.connect", True, "127.0.0.1:5432")
    report.skip("kafka.mirror_lag", "not measured: the peer cluster is down")
    return report


def test_a_skip_is_neither_a_pass_nor_a_failure() -> None:
    report = a_report()
    assert report.ok and report.exit_code() == 0
    out = report.table().splitlines()
    assert out[1].startswith("SKIP  kafka.mirror_lag")
    assert out[-1] == "OK: 1/2 checks passed, 1 skipped (a skip is not a pass)"


def test_strict_turns_a_skip_into_a_failed_run(tmp_path: Path) -> None:
    report = a_report()
    assert finish(report, tmp_path / "r.json", strict=True) == 1
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["ok"] is False and document["strict"] is True
    assert document["counts"] == {"pass": 1, "fail": 0, "skip": 1}
    assert [(c["name"], c["outcome"], c["ok"]) for c in document["checks"]] == [
        ("db.connect", "pass", True),
        ("kafka.mirror_lag", "skip", False),
    ]


def test_a_failure_fails_the_report() -> None:
    report = a_report()
    report.check("db.rpo", False, "beyond the RPO", value=901, limit=900)
    assert not report.ok and report.exit_code() == 1


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="outcome 'maybe' of check 'x' is unknown"):
        Report().record("x", "maybe")
