"""`db.split_brain` (drtopo.checks.db.split_brain_check) over every combination of answers from the pair: it fails
exactly when more than one database accepts writes, and its value counts the writable ones (a database that does not
answer counts as not writable, and is named)."""

from __future__ import annotations

import pytest

from drtopo.checks.db import split_brain_check
from drtopo.report import Report


@pytest.mark.parametrize(
    ("prod", "dr", "outcome", "value"),
    [
        (True, True, "fail", 2),
        (True, False, "pass", 1),
        (False, True, "pass", 1),
        (False, False, "pass", 0),
        (True, None, "pass", 1),
        (None, True, "pass", 1),
        (None, None, "pass", 0),
    ],
)
def test_fails_only_with_two_writers(prod: bool | None, dr: bool | None, outcome: str, value: int) -> None:
    report = Report()
    split_brain_check(report, {"prod": prod, "dr": dr})
    (check,) = report.checks
    assert (check.name, check.outcome, check.value, check.limit) == ("db.split_brain", outcome, value, 1)
    assert report.ok is (outcome == "pass")
    if outcome == "fail":
        assert check.detail == "split brain: dr and prod both accept writes"
    silent = sorted(name for name, answer in (("prod", prod), ("dr", dr)) if answer is None)
    if silent and outcome == "pass":
        assert f"not answering: {', '.join(silent)}" in check.detail
