"""Lag arithmetic: MirrorMaker lag from offset syncs (trimmed sources, diverged offsets, the offset.lag.max bound),
lag in seconds, where a flow keeps its offset syncs, and consumer-group offset validity."""

from __future__ import annotations

import pytest

from drtopo.kafka.admin import Partition
from drtopo.kafka.lag import (
    GroupPartition,
    OffsetSyncs,
    PartitionMirrorLag,
    choose_offset_syncs,
    flow_offset_syncs,
    group_partitions,
    lag_per_topic,
    mirror_lag,
    offset_syncs_location,
    partition_mirror_lag,
    seconds_per_topic,
)
from drtopo.kafka.offsets import OffsetSync

A0, A1, B0 = Partition("A", 0), Partition("A", 1), Partition("B", 0)


def sync(tp: Partition, upstream: int, downstream: int) -> OffsetSync:
    return OffsetSync(tp.topic, tp.partition, upstream, downstream)


def test_caught_up_when_the_newest_sync_is_the_last_record() -> None:
    lag = partition_mirror_lag(A0, 0, 100, 100, sync(A0, 99, 99), offset_lag_max=10)
    assert lag == PartitionMirrorLag(A0, records=0, next_offset=100, high=100, synced=True)


def test_records_copied_after_the_newest_sync_count_as_copied() -> None:
    # MirrorMaker syncs only every offset.lag.max records: 7 records landed on the target after the sync at 92.
    assert partition_mirror_lag(A0, 0, 100, 100, sync(A0, 92, 92), offset_lag_max=10).records == 0
    # 3 records produced on the source are not on the target yet.
    assert partition_mirror_lag(A0, 0, 103, 100, sync(A0, 92, 92), offset_lag_max=10).records == 3


def test_records_behind_the_sync_count_while_mirrormaker_is_stopped() -> None:
    lag = partition_mirror_lag(A0, 0, 150, 100, sync(A0, 99, 99), offset_lag_max=10)
    assert (lag.records, lag.next_offset) == (50, 100)


def test_a_trimmed_source_is_not_lag_once_its_remaining_records_are_copied() -> None:
    # The source lost offsets 0-29 to retention before they were copied; MirrorMaker copied 30-49 to target 0-19,
    # syncing (30, 0) and, offset.lag.max records later, (41, 11). End-offset subtraction: 50 - 20 = 30, forever.
    lag = partition_mirror_lag(A0, 30, 50, 20, sync(A0, 41, 11), offset_lag_max=10)
    assert (lag.records, lag.next_offset) == (0, 50)


def test_trimmed_records_never_copied_are_lost_not_lag() -> None:
    # Mirror stopped at source offset 100; 50 more produced; 30 of them trimmed: 20 remain to be copied.
    lag = partition_mirror_lag(A0, 130, 150, 100, sync(A0, 99, 99), offset_lag_max=10)
    assert (lag.records, lag.next_offset) == (20, 130)


def test_a_target_with_more_records_after_a_failback_is_not_ahead() -> None:
    # The target topic held 500 records of its own before this flow copied source 0-99 to target 500-599.
    assert partition_mirror_lag(A0, 0, 100, 600, sync(A0, 99, 599), offset_lag_max=10).records == 0
    assert partition_mirror_lag(A0, 0, 140, 600, sync(A0, 99, 599), offset_lag_max=10).records == 40


def test_foreign_records_on_the_target_hide_at_most_offset_lag_max() -> None:
    # 90 records written to the target by someone else after the sync at 9: only 10 may count as copied.
    lag = partition_mirror_lag(A0, 0, 100, 100, sync(A0, 9, 9), offset_lag_max=10)
    assert (lag.records, lag.next_offset) == (80, 20)


def test_no_sync_or_a_recreated_target_counts_every_source_record() -> None:
    assert partition_mirror_lag(A0, 5, 40, 0, None, offset_lag_max=10) == PartitionMirrorLag(A0, 35, 5, 40, False)
    # The synced record 99 is no longer on the target (topic recreated, 10 records): nothing known copied.
    assert partition_mirror_lag(A0, 0, 120, 10, sync(A0, 99, 99), offset_lag_max=10).records == 120


def test_an_empty_source_partition_has_no_lag() -> None:
    assert partition_mirror_lag(A0, 7, 7, 0, None, offset_lag_max=10).records == 0


def test_mirror_lag_per_partition_and_per_topic() -> None:
    parts = mirror_lag(
        {A0: (0, 10), A1: (0, 7), B0: (0, 4)},
        {A0: 4, A1: 7},
        {A0: sync(A0, 3, 3), A1: sync(A1, 6, 6)},
        offset_lag_max=10,
    )
    assert [(p.partition, p.records) for p in parts] == [(A0, 6), (A1, 0), (B0, 4)]  # B0 missing on the target
    assert lag_per_topic(parts) == {"A": 6, "B": 4}


def test_seconds_is_the_age_of_the_oldest_record_not_copied_per_topic() -> None:
    parts = [
        PartitionMirrorLag(A0, 5, 10, 15, True),
        PartitionMirrorLag(A1, 2, 3, 5, True),
        PartitionMirrorLag(B0, 0, 9, 9, True),
    ]
    now = 1_000_000
    assert seconds_per_topic(parts, {A0: now - 2500, A1: now - 9000}, now) == {"A": 9.0, "B": 0.0}
    # A producer clock ahead of ours is 0 s; a missing or unusable timestamp makes the topic's age unknown.
    assert seconds_per_topic(parts[:1], {A0: now + 5000}, now) == {"A": 0.0}
    assert seconds_per_topic(parts, {A0: now - 2500, A1: -1}, now) == {"A": None, "B": 0.0}
    assert seconds_per_topic(parts, {}, now)["A"] is None


def test_offset_syncs_location_is_read_from_the_properties_text() -> None:
    text = "clusters = a, b\na->b.enabled = true\na->b.offset-syncs.topic.location = target\n"
    assert offset_syncs_location(text, "a->b") == "target"
    assert offset_syncs_location(text, "b->a") == "source"  # unset: MirrorMaker's default


def test_flow_offset_syncs_follow_the_location() -> None:
    assert flow_offset_syncs("target", "s:1", "t:2", "east", "west") == OffsetSyncs(
        "t:2", "mm2-offset-syncs.east.internal"
    )
    assert flow_offset_syncs("source", "s:1", "t:2", "east", "west") == OffsetSyncs(
        "s:1", "mm2-offset-syncs.west.internal"
    )
    with pytest.raises(ValueError, match="'elsewhere' is unknown"):
        flow_offset_syncs("elsewhere", "s:1", "t:2", "east", "west")


def test_choose_offset_syncs_prefers_the_target_and_refuses_several() -> None:
    east, west = "mm2-offset-syncs.east.internal", "mm2-offset-syncs.west.internal"
    assert choose_offset_syncs(["A", east], [west]) == ("target", east)
    assert choose_offset_syncs(["A", "heartbeats"], [west]) == ("source", west)
    assert choose_offset_syncs(["A"], ["B"]) is None
    with pytest.raises(ValueError, match="expected one"):
        choose_offset_syncs([east, west], [])


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
