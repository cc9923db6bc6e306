"""The dump store's pure parts: whether an object can be read now, what its Restore header says, and the typical
retrieval time per storage class and tier (AWS's documented figures)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from drtopo.backup.dumps import age_text, pick_dump
from drtopo.backup.store import (
    StoredDump,
    manifest_key,
    readable_now,
    restore_state,
    retrieval_estimate,
    typical_time,
)
from drtopo.report import BadInput
from drtopo.tiers import DumpKey, parse_key

DONE = 'ongoing-request="false", expiry-date="Fri, 04 Dec 2026 00:00:00 GMT"'


@pytest.mark.parametrize(
    ("storage_class", "header", "state", "readable"),
    [
        ("STANDARD", None, "readable", True),
        ("STANDARD_IA", None, "readable", True),
        ("GLACIER_IR", None, "readable", True),  # Instant Retrieval needs no restore
        ("GLACIER", None, "archived", False),
        ("DEEP_ARCHIVE", 'ongoing-request="true"', "restoring", False),
        ("GLACIER", DONE, "restored until Fri, 04 Dec 2026 00:00:00 GMT", True),
    ],
)
def test_restore_state_and_readability(storage_class: str, header: str | None, state: str, readable: bool) -> None:
    assert restore_state(storage_class, header) == state
    assert readable_now(storage_class, header) is readable
    assert StoredDump("k", 1, {}, storage_class, header).readable is readable


def test_typical_retrieval_times_per_class_and_tier() -> None:
    assert retrieval_estimate("GLACIER", "Expedited") == (60, 300)
    assert retrieval_estimate("GLACIER", "Standard") == (3 * 3600, 5 * 3600)
    assert retrieval_estimate("DEEP_ARCHIVE", "Bulk") == (0, 48 * 3600)
    assert typical_time("GLACIER", "Expedited") == "typically 60 s-5 min"
    assert typical_time("DEEP_ARCHIVE", "Standard") == "typically within 12 h"
    with pytest.raises(
        BadInput, match="--tier Expedited is not offered for DEEP_ARCHIVE; expected one of Standard, Bulk"
    ):
        retrieval_estimate("DEEP_ARCHIVE", "Expedited")


def test_row_counts_come_from_the_manifest_and_manifests_are_not_dumps() -> None:
    old = StoredDump("k", 1, {"row-counts": '{"public.t":3}'})
    assert old.row_counts == {"public.t": 3}
    new = StoredDump("k", 1, {}, manifest={"row_counts": {"public.t": 5}})
    assert new.row_counts == {"public.t": 5}
    assert StoredDump("k", 1, {}).row_counts is None
    key = "monthly/db/2026-12-01/db-20261201T020000Z.dump"
    assert parse_key(key) is not None and parse_key(manifest_key(key)) is None


def test_a_restore_test_takes_the_newest_readable_dump_or_a_random_one_in_the_window() -> None:
    now = datetime(2026, 12, 10, tzinfo=UTC)

    def dump(tier: str, day: int, storage: str = "STANDARD") -> tuple[DumpKey, str, int, str]:
        at = datetime(2026, 12, day, 2, tzinfo=UTC)
        return DumpKey(tier, "db", at), f"{tier}/db/{at:%Y-%m-%d}/db-{at:%Y%m%dT%H%M%SZ}.dump", 1, storage

    dumps = [dump("daily", 9), dump("monthly", 9, "GLACIER"), dump("daily", 8), dump("daily", 1), dump("weekly", 8)]
    assert pick_dump(dumps, "db", now, 30) == dumps[0][1]
    picks = {pick_dump(dumps, "db", now, 5, random.Random(seed)) for seed in range(40)}
    assert picks == {dumps[0][1], dumps[2][1], dumps[4][1]}  # never the archived copy nor one outside the window
    with pytest.raises(BadInput, match="no readable dump of 'other' within 30 days"):
        pick_dump(dumps, "other", now, 30)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0m"), (59 * 60, "59m"), (3600, "1.0h"), (47.5 * 3600, "47.5h"), (172800, "2d"), (30 * 86400, "30d")],
)
def test_a_listed_dump_shows_its_age_in_minutes_hours_or_days(seconds: float, shown: str) -> None:
    assert age_text(seconds) == shown
