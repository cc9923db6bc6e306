"""Checks the five-field cron schedules the backup CronJobs run on, as pure functions.

Kubernetes accepts a schedule it can parse, however often it fires; the runbook needs the full dump exactly once a
day, so `require_daily` also refuses schedules that fire more or less often than that.
"""

from __future__ import annotations

import re

# (name, lowest, highest) of the five fields, in order.
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 7))
_NAMES = {
    "month": ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
    "day-of-week": ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"),
}
_ITEM = re.compile(r"^(?P<range>\*|\?|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")


class ScheduleError(ValueError):
    """A schedule that is not valid five-field cron (or not daily where daily is required); one line."""


def _number(text: str, field: str, low: int, high: int, schedule: str) -> int:
    names = _NAMES.get(field, ())
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit() or not low <= int(text) <= high:
        raise ScheduleError(f"schedule {schedule!r}: {field} {text!r} is out of range; expected {low}-{high}")
    return int(text)


def _check_field(text: str, field: str, low: int, high: int, schedule: str) -> None:
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None or (match["range"] == "?" and field not in ("day-of-month", "day-of-week")):
            raise ScheduleError(
                f"schedule {schedule!r}: {field} {item!r} is not valid; expected *, N, N-M, */S or a list of them"
            )
        if match["step"] is not None and int(match["step"]) == 0:
            raise ScheduleError(f"schedule {schedule!r}: {field} step {item!r} is zero; expected a positive step")
        if match["range"] in ("*", "?"):
            continue
        first, _, last = match["range"].partition("-")
        start = _number(first, field, low, high, schedule)
        if last and _number(last, field, low, high, schedule) < start:
            raise ScheduleError(f"schedule {schedule!r}: {field} range {item!r} is reversed; expected N-M with N<=M")


def check_schedule(schedule: str) -> list[str]:
    """The five fields of a valid cron schedule; raise ScheduleError naming the bad field otherwise."""
    fields = schedule.split()
    if len(fields) != len(FIELDS):
        raise ScheduleError(
            f"schedule {schedule!r} has {len(fields)} fields; expected 5 (minute hour day-of-month month day-of-week)"
        )
    for text, (field, low, high) in zip(fields, FIELDS, strict=True):
        _check_field(text, field, low, high, schedule)
    return fields


def require_daily(schedule: str) -> str:
    """Return `schedule` when it fires exactly once every day (e.g. '15 2 * * *'); raise ScheduleError otherwise."""
    minute, hour, day, month, weekday = check_schedule(schedule)
    if not (minute.isdigit() and hour.isdigit() and day in ("*", "?") and month == "*" and weekday in ("*", "?")):
        raise ScheduleError(
            f"schedule {schedule!r} does not run exactly once a day; expected 'M H * * *' with one minute and one hour"
        )
    return schedule
