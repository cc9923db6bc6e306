"""Just enough of the cron language (as Kubernetes CronJobs accept it) to tell whether a schedule runs every day."""

from __future__ import annotations

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_NAMES = {
    3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}


class CronError(ValueError):
    """A schedule that is not valid cron."""


def _value(text: str, index: int, low: int) -> int:
    names = _NAMES.get(index, [])
    if text.lower() in names:
        return names.index(text.lower()) + (1 if index == 3 else 0)
    if not text.isdigit():
        raise CronError(f"{_FIELDS[index][0]} value {text!r} is not a number")
    return int(text)


def _expand(field: str, index: int) -> set[int]:
    name, low, high = _FIELDS[index]
    values: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise CronError(f"{name} step {step_text!r} is not a positive number")
        if span in ("*", "?"):
            start, end = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            start, end = _value(a, index, low), _value(b, index, low)
        else:
            start = _value(span, index, low)
            end = high if step else start
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise CronError(f"{name} {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step or 1))
    if index == 4 and 7 in values:
        values = (values - {7}) | {0}
    return values


def parse(schedule: str) -> list[set[int]]:
    """The five fields of `schedule` expanded to sets of values; raises CronError when it is not valid cron."""
    text = MACROS.get(schedule.strip(), schedule.strip())
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"schedule {schedule!r} has {len(fields)} fields; expected 5 or one of {', '.join(MACROS)}")
    return [_expand(f, i) for i, f in enumerate(fields)]


def runs_every_day(schedule: str) -> bool:
    """True when the schedule fires at least once on every calendar day."""
    text = MACROS.get(schedule.strip(), schedule.strip())
    _minutes, _hours, days, months, weekdays = parse(schedule)
    dom_field, dow_field = text.split()[2], text.split()[4]
    all_days, all_weekdays = days == set(range(1, 32)), weekdays == set(range(7))
    if months != set(range(1, 13)):
        return False
    # Cron's rule: when both day fields are restricted, a day matching either fires.
    if dom_field.startswith("*") or dow_field.startswith("*"):
        return all_days and all_weekdays
    return all_days or all_weekdays
