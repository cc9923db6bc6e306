"""Lag arithmetic: MirrorMaker lag per topic (clamped, missing partitions) and consumer-group offset validity."""

from __future__ import annotations

from drtopo.kafka.admin import Partition
from drtopo.kafka.lag import GroupPartition, group_partitions, mirror_lag

A0, A1, B0 = Partition("A", 0), Partition("A", 1), Partition("B", 0)


def test_mirror_lag_sums_partitions_per_topic() -> None:
    assert mirror_lag({A0: 10, A1: 7, B0: 3}, {A0: 4, A1: 7, B0: 3}) == {"A": 6, "B": 0}


def test_mirror_lag_clamps_a_target_ahead_at_zero_per_partition() -> None:
    # A target ahead on one partition (e.g. producers wrote there after a failover) must not hide lag on another.
    assert mirror_lag({A0: 10, A1: 10}, {A0: 50, A1: 8}) == {"A": 2}


def test_partition_missing_on_target_counts_everything() -> None:
    assert mirror_lag({A0: 10, B0: 4}, {A0: 10}) == {"A": 0, "B": 4}


def test_group_partitions_validity_and_lag() -> None:
    parts = group_partitions({A0: 5, A1: 50}, {A0: (0, 8), A1: (0, 20), B0: (3, 9)})
    by = {p.partition: p for p in parts}
    assert (by[A0].valid, by[A0].lag) == (True, 3)
    assert (by[A1].valid, by[A1].lag) == (False, None)  # beyond the log end: the consumer would reset
    assert (by[B0].committed, by[B0].valid, by[B0].lag) == (None, False, None)


def test_committed_below_low_watermark_is_invalid() -> None:
    assert not GroupPartition(A0, committed=2, low=3, high=9).valid
    assert GroupPartition(A0, committed=9, low=3, high=9).as_dict() == {
        "topic": "A",
        "partition": 0,
        "committed": 9,
        "low": 3,
        "high": 9,
        "valid": True,
        "lag": 0,
    }
