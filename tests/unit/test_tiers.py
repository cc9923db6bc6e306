"""Backup tiers by date, the dump key layout, and gap detection in `backup list`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from drtopo.tiers import DumpKey, dump_key, find_gaps, parse_key, tiers_for


@pytest.mark.parametrize(
    ("day", "tiers"),
    [
        (date(2026, 11, 25), ("daily",)),  # a Wednesday
        (date(2026, 11, 29), ("daily", "weekly")),  # a Sunday
        (date(2026, 12, 1), ("daily", "monthly")),  # a Tuesday, the 1st
        (date(2026, 11, 1), ("daily", "weekly", "monthly")),  # a Sunday, the 1st
        (date(2027, 1, 1), ("daily", "monthly", "yearly")),  # a Friday, 1 January
        (date(2023, 1, 1), ("daily", "weekly", "monthly", "yearly")),  # a Sunday, 1 January
    ],
)
def test_tiers_for_a_date(day: date, tiers: tuple[str, ...]) -> None:
    assert tiers_for(day) == tiers


def test_every_day_of_a_year_is_daily_and_counts_add_up() -> None:
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    counts = {t: sum(t in tiers_for(d) for d in days) for t in ("daily", "weekly", "monthly", "yearly")}
    assert counts == {"daily": 365, "weekly": 52, "monthly": 12, "yearly": 1}


def test_key_is_in_utc_and_round_trips() -> None:
    taken = datetime(2026, 11, 29, 1, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    key = dump_key("weekly", "exception_collector", taken)
    assert key == "weekly/exception_collector/2026-11-28/exception_collector-20261128T233005Z.dump"
    assert parse_key(key) == DumpKey("weekly", "exception_collector", taken.astimezone(UTC))


@pytest.mark.parametrize(
    "key",
    [
        "daily/db/2026-11-28/db-20261128T233005Z.sql",
        "hourly/db/2026-11-28/db-20261128T233005Z.dump",
        "daily/db/2026-11-28/other-20261128T233005Z.dump",
        "daily/db/2026-11-27/db-20261128T233005Z.dump",  # folder date disagrees with the stamp
        "config/prod/20261128T233005Z/manifest.json",
    ],
)
def test_foreign_keys_are_not_dumps(key: str) -> None:
    assert parse_key(key) is None


def test_key_refuses_unknown_tier_and_naive_time() -> None:
    with pytest.raises(ValueError, match="hourly"):
        dump_key("hourly", "db", datetime.now(UTC))
    with pytest.raises(ValueError, match="no zone"):
        dump_key("daily", "db", datetime(2026, 1, 1))


def _keys(days: list[date]) -> list[DumpKey]:
    return [DumpKey(tier, "db", datetime.combine(d, datetime.min.time(), UTC)) for d in days for tier in tiers_for(d)]


def test_no_gaps_for_a_complete_history() -> None:
    today = date(2026, 11, 27)
    days = [today - timedelta(days=i) for i in range(40)]
    assert find_gaps(_keys(days), today) == []


def test_missing_dailies_are_grouped_and_today_is_not_yet_due() -> None:
    today = date(2026, 11, 27)
    days = [date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 25)]
    gaps = [g.detail for g in find_gaps(_keys(days), today)]
    assert "no daily backup for 2026-11-22 .. 2026-11-24 (3 days)" in gaps
    assert "no daily backup for 2026-11-26" in gaps
    assert not any("2026-11-27" in g for g in gaps)


def test_empty_tier_is_a_gap_only_once_one_of_its_dates_passed() -> None:
    # History from Wednesday 25 Nov: no Sunday, 1st or 1 January passed yet.
    days = [date(2026, 11, 25), date(2026, 11, 26)]
    assert find_gaps(_keys(days), date(2026, 11, 27)) == []
    # Keep only dailies across Sunday 29 Nov and Tuesday 1 Dec: weekly and monthly should hold something.
    days = [date(2026, 11, 25) + timedelta(days=i) for i in range(8)]
    dailies = [k for k in _keys(days) if k.tier == "daily"]
    gaps = {g.tier: g.detail for g in find_gaps(dailies, date(2026, 12, 3))}
    assert set(gaps) == {"weekly", "monthly"}
    assert "2026-11-29" in gaps["weekly"] and "2026-12-01" in gaps["monthly"]


def test_no_backups_at_all_is_a_gap() -> None:
    assert [g.tier for g in find_gaps([], date(2026, 11, 27))] == ["daily"]
