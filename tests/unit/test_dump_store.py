"""The dump store's pure parts: whether an object can be read now, what its Restore header says, and the typical
retrieval time per storage class and tier (AWS's documented figures)."""

from __future__ import annotations

import pytest

from drtopo.backup.store import (
    StoredDump,
    manifest_key,
    readable_now,
    restore_state,
    retrieval_estimate,
    typical_time,
)
from drtopo.report import BadInput
from drtopo.tiers import parse_key

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
