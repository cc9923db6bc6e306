"""The pure parts of drtopo.database.compare: key-range bucketing, bucket and key differences, the listing limit."""

from __future__ import annotations

import itertools

import pytest
from psycopg import sql

from drtopo.database.compare import (
    MAX_MODULUS,
    KeyDiff,
    KeyRange,
    TablePlan,
    bucket_range,
    bucket_width,
    diff_keys,
    differing_buckets,
    truncate,
)


@pytest.mark.parametrize(
    ("lo", "hi", "parts", "width"),
    [(1, 1_000_000, 128, 7813), (1, 128, 128, 1), (1, 10, 128, 1), (-5, 5, 2, 6), (7, 7, 4, 1)],
)
def test_bucket_width_covers_the_range_in_at_most_parts_buckets(lo: int, hi: int, parts: int, width: int) -> None:
    r = KeyRange(lo, hi)
    assert bucket_width(r, parts) == width
    assert -(-r.size // width) <= parts


def test_buckets_tile_the_range_without_gaps_or_overlaps() -> None:
    r = KeyRange(3, 1000)
    width = bucket_width(r, 7)
    ranges = [bucket_range(r, width, b) for b in range(7)]
    assert ranges[0].lo == r.lo and ranges[-1].hi == r.hi
    assert all(a.hi + 1 == b.lo for a, b in itertools.pairwise(ranges))
    assert sum(x.size for x in ranges) == r.size


def test_bucket_number_matches_the_sql_expression() -> None:
    """SQL buckets rows by (key - lo) / width; each key must land in the range bucket_range gives back."""
    r = KeyRange(100, 10_099)
    width = bucket_width(r, 128)
    for key in (100, 177, 178, 5000, 10_099):
        b = (key - r.lo) // width
        assert bucket_range(r, width, b).lo <= key <= bucket_range(r, width, b).hi


def test_bucket_width_rejects_no_parts() -> None:
    with pytest.raises(ValueError, match="parts 0"):
        bucket_width(KeyRange(1, 2), 0)


def test_differing_buckets_include_one_sided_buckets() -> None:
    a = {0: (10, 111), 1: (10, 222), 2: (5, 333)}
    b = {0: (10, 111), 1: (10, 999), 3: (1, 5)}
    assert differing_buckets(a, b) == [1, 2, 3]
    assert differing_buckets(a, dict(a)) == []


def test_diff_keys_sorts_missing_extra_changed() -> None:
    reference = {1: 10, 2: 20, 3: 30, 5: 50}
    target = {1: 10, 2: 21, 4: 40, 5: 50}
    d = diff_keys(reference, target)
    assert (d.missing, d.extra, d.changed) == ([3], [4], [2])
    assert len(d) == 3


def test_truncate_keeps_the_lowest_keys_across_kinds() -> None:
    d = KeyDiff(missing=[5, 9], extra=[1], changed=[3, 7])
    t = truncate(d, 3)
    assert (t.missing, t.extra, t.changed) == ([5], [1], [3])
    assert len(truncate(d, 0)) == 0
    assert len(truncate(d, 99)) == 5


def make_plan(by_range: bool) -> TablePlan:
    key = ("id",) if by_range else ("region", "n")
    return TablePlan("t", key, by_range, sql.SQL("h(t)"), sql.SQL("h64(t)"), "hash_record")


def test_an_integer_key_descends_by_value_ranges() -> None:
    plan = make_plan(by_range=True)
    root = plan.root([(1, 1000), (2, 1001)])
    assert root == KeyRange(1, 1001)
    assert plan.level(root, 128)[1] == (1, 8, 1, 1001)
    # the root holds every row: no filter, the same buckets
    whole, params = plan.level(root, 128, whole=True)
    assert params == (1, 8) and "WHERE" not in whole.as_string(None)
    assert plan.child(root, 3, 128) == KeyRange(25, 32)
    assert plan.leaf(KeyRange(25, 32))[1] == (25, 32)
    assert plan.indivisible(KeyRange(1, 128), 128) and not plan.indivisible(KeyRange(1, 129), 128)
    assert plan.root([(None, None), (None, None)]) is None
    assert plan.root([(None, None), (5, 9)]) == KeyRange(5, 9)


def test_other_keys_descend_by_hash_residues() -> None:
    plan = make_plan(by_range=False)
    root = plan.root([])
    assert root == (1, 0)
    assert plan.level(root, 128)[1] == (128, 1, 0)
    whole, params = plan.level(root, 128, whole=True)
    assert params == (128,) and "WHERE" not in whole.as_string(None)
    child = plan.child(root, 77, 128)
    assert child == (128, 77) and plan.level(child, 128)[1] == (16384, 128, 77)
    # every residue of the child's modulus that the grandchild picks agrees with the child's residue
    grandchild = plan.child(child, 77 + 128 * 9, 128)
    assert grandchild[1] % child[0] == child[1]
    assert plan.leaf(child)[1] == (128, 77)
    assert plan.key_of(("eu", 4, 123)) == ("eu", 4) and make_plan(True).key_of((4, 123)) == 4
    assert plan.indivisible((MAX_MODULUS // 64, 0), 128)
