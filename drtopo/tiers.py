"""Backup tiers and the dump bucket's key layout: which tiers a date belongs to, and where a dump lives.

Pure functions only. The bucket's lifecycle rules expire objects per tier prefix (`daily/`, `weekly/`, `monthly/`,
`yearly/`), so a dump is stored once under every tier its date belongs to:
`<tier>/<database>/<YYYY-MM-DD>/<database>-<YYYYMMDDTHHMMSSZ>.dump`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

TIERS = ("daily", "weekly", "monthly", "yearly")
SUFFIX = ".dump"
_KEY = re.compile(
    r"^(?P<tier>daily|weekly|monthly|yearly)/(?P<db>[^/]+)/(?P<day>\d{4}-\d{2}-\d{2})/"
    r"(?P=db)-(?P<stamp>\d{8}T\d{6}Z)\.dump$"
)


def tiers_for(day: date) -> tuple[str, ...]:
    """Daily always; weekly on Sundays; monthly on the 1st; yearly on 1 January."""
    tiers = ["daily"]
    if day.weekday() == 6:
        tiers.append("weekly")
    if day.day == 1:
        tiers.append("monthly")
        if day.month == 1:
            tiers.append("yearly")
    return tuple(tiers)


def in_tier(day: date, tier: str) -> bool:
    return tier in tiers_for(day)


def dump_key(tier: str, database: str, taken_at: datetime) -> str:
    """The object key of a dump of `database` taken at `taken_at` (aware), stored under `tier`."""
    if tier not in TIERS:
        raise ValueError(f"tier {tier!r} is unknown; expected one of {', '.join(TIERS)}")
    if taken_at.tzinfo is None:
        raise ValueError(f"time {taken_at.isoformat()} has no zone; expected an aware datetime")
    utc = taken_at.astimezone(UTC)
    return f"{tier}/{database}/{utc:%Y-%m-%d}/{database}-{utc:%Y%m%dT%H%M%SZ}{SUFFIX}"


@dataclass(frozen=True)
class DumpKey:
    tier: str
    database: str
    taken_at: datetime

    @property
    def day(self) -> date:
        return self.taken_at.date()


def parse_key(key: str) -> DumpKey | None:
    """The parts of a dump key, or None for an object that is not a dump of this layout."""
    m = _KEY.match(key)
    if m is None:
        return None
    taken_at = datetime.strptime(m["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if f"{taken_at:%Y-%m-%d}" != m["day"]:
        return None
    return DumpKey(m["tier"], m["db"], taken_at)


@dataclass(frozen=True)
class Gap:
    tier: str
    detail: str


def find_gaps(keys: Iterable[DumpKey], today: date) -> list[Gap]:
    """Missing dailies (each day from the first backup up to yesterday) and tiers empty although a due date passed.

    A tier is due once any day from the oldest backup of any tier through `today` belongs to it; before that an
    empty tier is expected (a fresh deployment has no yearly backup until its first 1 January).
    """
    keys = list(keys)
    if not keys:
        return [Gap("daily", "no backups at all")]
    first = min(k.day for k in keys)
    by_tier: dict[str, set[date]] = {t: set() for t in TIERS}
    for k in keys:
        by_tier[k.tier].add(k.day)
    gaps: list[Gap] = []
    for tier in TIERS:
        due = [d for d in _days(first, today) if in_tier(d, tier)]
        if due and not by_tier[tier]:
            gaps.append(Gap(tier, f"tier is empty although {due[0].isoformat()} belongs to it"))
    if by_tier["daily"]:
        start = min(by_tier["daily"])
        missing = [d for d in _days(start, today - timedelta(days=1)) if d not in by_tier["daily"]]
        gaps.extend(Gap("daily", _missing(run)) for run in _runs(missing))
    return gaps


def _runs(days: list[date]) -> list[list[date]]:
    """Consecutive days grouped: [1, 2, 3, 5] -> [[1, 2, 3], [5]]."""
    runs: list[list[date]] = []
    for d in days:
        if runs and d - runs[-1][-1] == timedelta(days=1):
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs


def _missing(run: list[date]) -> str:
    if len(run) == 1:
        return f"no daily backup for {run[0].isoformat()}"
    return f"no daily backup for {run[0].isoformat()} .. {run[-1].isoformat()} ({len(run)} days)"


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
