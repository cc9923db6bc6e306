"""Five-field cron checks: what Kubernetes would parse, and what fires exactly once a day."""

from __future__ import annotations

import re

import pytest

from drtopo.cron import ScheduleError, check_schedule, require_daily


@pytest.mark.parametrize(
    "schedule",
    [
        "15 2 * * *",
        "*/5 * * * *",
        "0 0-6/2 1,15 JAN-MAR MON-FRI",
        "0 3 ? * *",
        "30 4 * * 0,7",
        "0 12 31 12 *",
        "@weekly",
    ],
)
def test_valid_schedules_pass(schedule: str) -> None:
    assert len(check_schedule(schedule)) == 5


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("15 2 * *", "has 4 fields; expected 5"),
        ("@fortnightly", "has 1 fields; expected 5"),
        ("60 2 * * *", "minute '60' is out of range; expected 0-59"),
        ("0 24 * * *", "hour '24' is out of range; expected 0-23"),
        ("0 0 0 * *", "day-of-month '0' is out of range; expected 1-31"),
        ("0 0 * 13 *", "month '13' is out of range; expected 1-12"),
        ("0 0 * * 8", "day-of-week '8' is out of range; expected 0-7"),
        ("0 0 * * FOO", "day-of-week 'FOO' is out of range"),
        ("*/0 * * * *", "step '*/0' is zero"),
        ("0 5-2 * * *", "range '5-2' is reversed"),
        ("? * * * *", "minute '?' is not valid"),
        ("1,,2 * * * *", "minute '' is not valid"),
    ],
)
def test_invalid_schedules_name_the_field(schedule: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(message)):
        check_schedule(schedule)


@pytest.mark.parametrize("schedule", ["15 2 * * *", "0 0 ? * ?", "59 23 * * *", "@daily", "@midnight"])
def test_daily_schedules(schedule: str) -> None:
    assert require_daily(schedule) == schedule


@pytest.mark.parametrize(
    "schedule",
    [
        "*/15 * * * *",
        "0 */6 * * *",
        "0 2,14 * * *",
        "0 2 * * MON",
        "0 2 1 * *",
        "0 2 * 1 *",
        "* 2 * * *",
        "@hourly",
        "@weekly",
    ],
)
def test_schedules_not_once_a_day_are_refused(schedule: str) -> None:
    with pytest.raises(ScheduleError, match="does not run exactly once a day"):
        require_daily(schedule)
