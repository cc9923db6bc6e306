"""The one cron parser: the schedules Kubernetes CronJobs accept, as pure functions.

`parse` expands a schedule (five fields, or a macro such as `@daily`) into the values each field matches and raises
`ScheduleError` naming the bad field otherwise. The program refuses a dump schedule that does not fire exactly once
a day (`require_daily`); the policy pack asks whether a schedule fires on every calendar day (`runs_every_day`).
"""

from __future__ import annotations

import re

# (name, lowest, highest) of the five fields, in order.
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 7))
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_NAMES = {
    "month": ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
    "day-of-week": ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"),
}
_ITEM = re.compile(r"^(?P<range>\*|\?|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")


class ScheduleError(ValueError):
    """A schedule that is not valid cron (or not daily where daily is required); one line."""


def _number(text: str, field: str, low: int, high: int, schedule: str) -> int:
    names = _NAMES.get(field, ())
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit() or not low <= int(text) <= high:
        raise ScheduleError(f"schedule {schedule!r}: {field} {text!r} is out of range; expected {low}-{high}")
    return int(text)


def _expand(text: str, field: str, low: int, high: int, schedule: str) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None or (match["range"] == "?" and field not in ("day-of-month", "day-of-week")):
            raise ScheduleError(
                f"schedule {schedule!r}: {field} {item!r} is not valid; expected *, N, N-M, */S or a list of them"
            )
        step = 1 if match["step"] is None else int(match["step"])
        if step == 0:
            raise ScheduleError(f"schedule {schedule!r}: {field} step {item!r} is zero; expected a positive step")
        if match["range"] in ("*", "?"):
            start, end = low, high
        else:
            first, _, last = match["range"].partition("-")
            start = _number(first, field, low, high, schedule)
            end = _number(last, field, low, high, schedule) if last else (high if match["step"] else start)
            if end < start:
                raise ScheduleError(
                    f"schedule {schedule!r}: {field} range {item!r} is reversed; expected N-M with N<=M"
                )
        values.update(range(start, end + 1, step))
    if field == "day-of-week" and 7 in values:  # 0 and 7 are both Sunday
        values = (values - {7}) | {0}
    return values


def fields_of(schedule: str) -> list[str]:
    """The five fields of `schedule`, macros spelled out; ScheduleError when there are not five."""
    fields = MACROS.get(schedule.strip(), schedule).split()
    if len(fields) != len(FIELDS):
        raise ScheduleError(
            f"schedule {schedule!r} has {len(fields)} fields; expected 5 (minute hour day-of-month month "
            f"day-of-week) or one of {', '.join(MACROS)}"
        )
    return fields


def parse(schedule: str) -> list[set[int]]:
    """The values each of the five fields matches; raise ScheduleError naming the bad field otherwise."""
    return [
        _expand(text, field, low, high, schedule)
        for text, (field, low, high) in zip(fields_of(schedule), FIELDS, strict=True)
    ]


def check_schedule(schedule: str) -> list[str]:
    """The five fields of a valid cron schedule; raise ScheduleError naming the bad field otherwise."""
    parse(schedule)
    return fields_of(schedule)


def runs_every_day(schedule: str) -> bool:
    """True when the schedule fires at least once on every calendar day."""
    _minutes, _hours, days, months, weekdays = parse(schedule)
    day_field, weekday_field = fields_of(schedule)[2], fields_of(schedule)[4]
    all_days, all_weekdays = days == set(range(1, 32)), weekdays == set(range(7))
    if months != set(range(1, 13)):
        return False
    # Cron's rule: when both day fields are restricted, a day matching either fires.
    if day_field.startswith(("*", "?")) or weekday_field.startswith(("*", "?")):
        return all_days and all_weekdays
    return all_days or all_weekdays


def require_daily(schedule: str) -> str:
    """Return `schedule` when it fires exactly once every day (e.g. '15 2 * * *'); raise ScheduleError otherwise."""
    minutes, hours, *_ = parse(schedule)
    day_field, weekday_field = fields_of(schedule)[2], fields_of(schedule)[4]
    unrestricted_days = day_field in ("*", "?") and weekday_field in ("*", "?")
    if not (len(minutes) == 1 and len(hours) == 1 and unrestricted_days and runs_every_day(schedule)):
        raise ScheduleError(
            f"schedule {schedule!r} does not run exactly once a day; expected 'M H * * *' with one minute and one hour"
        )
    return schedule
