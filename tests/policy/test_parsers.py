"""The pure helpers the rules lean on: cron schedules, Java properties, input lookup and message formatting."""

from __future__ import annotations

import pytest

from drtopo.cron import ScheduleError, runs_every_day
from drtopo.mm2_properties import render_mm2_properties
from drtopo.settings import load_settings
from policies.model import UNKNOWN, UnknownValue, fmt, lookup
from policies.properties import parse_properties


@pytest.mark.parametrize(
    "schedule",
    ["15 2 * * *", "@daily", "@hourly", "0 */6 * * *", "0 0 * * 0-6", "0 0 1-31 * *", "0 3 * * sun-sat", "0 0 * * 0-7"],
)
def test_daily_schedules(schedule: str) -> None:
    assert runs_every_day(schedule)


@pytest.mark.parametrize(
    "schedule", ["15 2 * * 0", "@weekly", "@monthly", "0 0 */2 * *", "0 0 * 1-6 *", "0 0 1 * 1-5", "0 0 * * mon-fri"]
)
def test_schedules_that_skip_days(schedule: str) -> None:
    assert not runs_every_day(schedule)


@pytest.mark.parametrize("schedule", ["15 2 * *", "61 2 * * *", "0 25 * * *", "0 0 * * funday", "0 0 * * */0"])
def test_invalid_cron_names_the_field(schedule: str) -> None:
    with pytest.raises(ScheduleError):
        runs_every_day(schedule)


def test_properties_forms_and_comments() -> None:
    text = "# comment\n! also\na = 1\nb:2\nc 3\nd = x=y\nlong = one \\\n   two\na = 4\n"
    assert parse_properties(text) == {"a": "4", "b": "2", "c": "3", "d": "x=y", "long": "one two"}


def test_properties_of_the_rendered_mm2_text() -> None:
    props = parse_properties(render_mm2_properties(load_settings("dr")))
    assert props["clusters"] == "us-east-1, us-west-2"
    assert props["us-east-1->us-west-2.enabled"] == "true"
    assert props["us-east-1->us-west-2.emit.checkpoints.interval.seconds"] == "10"


def test_lookup_paths_and_unknowns() -> None:
    inputs = {"rules": [{"expiration": {"days": 30.0}}], "later": UNKNOWN}
    assert lookup(inputs, "rules[0].expiration.days") == 30.0
    assert lookup(inputs, "rules[1].expiration.days", "none") == "none"
    with pytest.raises(UnknownValue):
        lookup(inputs, "later.anything")


def test_fmt_is_readable() -> None:
    assert [fmt(30.0), fmt(1.5), fmt(None), fmt(False), fmt("Allow")] == ["30", "1.5", "(not set)", "false", "'Allow'"]
