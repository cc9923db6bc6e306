"""Kafka lag: MirrorMaker 2 lag per partition and topic from its offset syncs, and a consumer group's lag per partition.

MirrorMaker lag is not source end offset minus target end offset: that breaks once the source trims old records
(retention, delete_records: the records gone before they were copied never arrive, and the target's offsets no longer
line up with the source's) and after a failback cycle (the target topic holds more or fewer records than the source).
It comes from MirrorMaker's own record of what it copied, the offset syncs (`offsets.OffsetSync`): the newest sync
of a partition says source record `u` is target record `d`. MirrorMaker writes the records after `d` in order, one
target record per source record, and emits a new sync whenever that stops being true (a skipped source offset, a
truncated target, a restart), so the `target_high - 1 - d` records after `d` are source records `u+1 ...`; the first
source record not yet copied is `next = u + 1 + (target_high - 1 - d)` (never below the source's low watermark:
trimmed records are lost, not lag), and the lag is `source_high - next` records.

Error bound. MirrorMaker emits a sync only once `offset.lag.max` (L) records have passed since the last one (or at its
periodic offset commit), so the newest sync trails the copy by up to L records; counting the target records beyond
it removes that error. What remains: records written to the target partition by anything but MirrorMaker after the
newest sync would count as copied, so the extension is capped at L, which bounds that under-count at L records per
partition; a sync still in flight while more than L records were copied over-counts by the records since, for
milliseconds. A partition with no sync (MirrorMaker never copied it) or whose synced record is no longer on the target
(the target topic was recreated) counts every record of the source as not copied.

Lag in seconds per partition: now minus the timestamp of the oldest source record not yet copied (0 when caught up);
per topic the largest. A consumer group's committed offset is valid on a cluster when it lies within that
partition's [low, high] watermarks; outside them the consumer would reset (lose or replay data). The arithmetic is
pure; the I/O functions only fetch offsets, syncs and timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from drtopo.kafka.admin import TIMEOUT, Partition, admin_client, committed_offsets, end_offsets, watermarks
from drtopo.kafka.offsets import (
    OFFSET_SYNCS_PREFIX,
    OFFSET_SYNCS_SUFFIX,
    OffsetSync,
    offset_syncs_topic,
    read_offset_syncs,
    record_timestamps,
)
from drtopo.settings import Mirror

DEFAULT_OFFSET_LAG_MAX = Mirror().offset_lag_max
LOCATIONS = ("source", "target")


@dataclass(frozen=True)
class GroupPartition:
    """One partition of a consumer group on one cluster: committed offset (None: never committed) and watermarks."""

    partition: Partition
    committed: int | None
    low: int
    high: int

    @property
    def valid(self) -> bool:
        return self.committed is not None and self.low <= self.committed <= self.high

    @property
    def lag(self) -> int | None:
        """Records not yet consumed; None when the committed offset is missing or outside the log."""
        return self.high - self.committed if self.valid and self.committed is not None else None

    def as_dict(self) -> dict[str, object]:
        return {
            "topic": self.partition.topic,
            "partition": self.partition.partition,
            "committed": self.committed,
            "low": self.low,
            "high": self.high,
            "valid": self.valid,
            "lag": self.lag,
        }


@dataclass(frozen=True)
class OffsetSyncs:
    """Where a MirrorMaker 2 flow keeps its offset syncs: the cluster and the topic."""

    bootstrap: str
    topic: str


@dataclass(frozen=True)
class PartitionMirrorLag:
    """One mirrored partition: source records not yet on the target, from `next_offset` (the oldest) to `high`."""

    partition: Partition
    records: int
    next_offset: int
    high: int
    synced: bool  # an offset sync anchored the count (else every source record counts as not copied)


@dataclass(frozen=True)
class MirrorLag:
    """MirrorMaker 2 lag per topic, in records and seconds (None: the oldest missing record's age is unknown)."""

    records: dict[str, int]
    seconds: dict[str, float | None]
    partitions: list[PartitionMirrorLag]


def offset_syncs_location(properties: str, flow: str) -> str:
    """`<flow>.offset-syncs.topic.location` in mm2.properties text, MirrorMaker's default "source" when unset (pure)."""
    key = f"{flow}.offset-syncs.topic.location"
    for line in properties.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return "source"


def flow_offset_syncs(
    location: str, source_bootstrap: str, target_bootstrap: str, source_alias: str, target_alias: str
) -> OffsetSyncs:
    """Where the flow source -> target keeps its offset syncs, for `offset-syncs.topic.location` = location (pure)."""
    if location == "target":
        return OffsetSyncs(target_bootstrap, offset_syncs_topic(source_alias))
    if location == "source":
        return OffsetSyncs(source_bootstrap, offset_syncs_topic(target_alias))
    raise ValueError(f"offset-syncs.topic.location {location!r} is unknown; expected one of {', '.join(LOCATIONS)}")


def partition_mirror_lag(
    tp: Partition, low: int, high: int, target_high: int, sync: OffsetSync | None, offset_lag_max: int
) -> PartitionMirrorLag:
    """The lag of one partition from its source watermarks, target end offset and newest offset sync (pure)."""
    if sync is not None and target_high > sync.downstream_offset:
        beyond = min(target_high - 1 - sync.downstream_offset, offset_lag_max)
        copied_end, synced = sync.upstream_offset + 1 + beyond, True
    else:
        copied_end, synced = low, False
    next_offset = min(max(low, copied_end), high)
    return PartitionMirrorLag(tp, high - next_offset, next_offset, high, synced)


def mirror_lag(
    source_watermarks: Mapping[Partition, tuple[int, int]],
    target_ends: Mapping[Partition, int],
    syncs: Mapping[Partition, OffsetSync],
    offset_lag_max: int,
) -> list[PartitionMirrorLag]:
    """Every source partition's lag (pure); a partition missing on the target counts as an empty one."""
    return [
        partition_mirror_lag(tp, low, high, target_ends.get(tp, 0), syncs.get(tp), offset_lag_max)
        for tp, (low, high) in sorted(source_watermarks.items())
    ]


def lag_per_topic(parts: Iterable[PartitionMirrorLag]) -> dict[str, int]:
    """Records behind per topic: the sum over its partitions (pure)."""
    records: dict[str, int] = {}
    for p in parts:
        records[p.partition.topic] = records.get(p.partition.topic, 0) + p.records
    return dict(sorted(records.items()))


def seconds_per_topic(
    parts: Iterable[PartitionMirrorLag], timestamps_ms: Mapping[Partition, int], now_ms: int
) -> dict[str, float | None]:
    """Per topic, the age in seconds of its oldest record not yet copied: the largest over its partitions (pure).

    0 for a caught-up topic; None when a lagging partition's record has no usable timestamp (a clock ahead of ours
    counts as 0 s).
    """
    ages: dict[str, float | None] = {}
    for p in parts:
        topic = p.partition.topic
        ages.setdefault(topic, 0.0)
        if p.records == 0:
            continue
        stamp = timestamps_ms.get(p.partition, -1)
        age = max(0.0, (now_ms - stamp) / 1000) if stamp >= 0 else None
        current = ages[topic]
        ages[topic] = None if age is None or current is None else max(current, age)
    return dict(sorted(ages.items()))


def measure_mirror_lag(
    source_bootstrap: str,
    target_bootstrap: str,
    topics: Iterable[str],
    syncs: OffsetSyncs | None,
    offset_lag_max: int = DEFAULT_OFFSET_LAG_MAX,
) -> MirrorLag:
    """MirrorMaker 2 lag of `topics` from source to target, per topic in records and seconds.

    `syncs` None: the flow has no offset-syncs topic yet, so nothing is known to be copied. Read in the order that
    can only over-state the lag: the syncs, then the target's end offsets, then the source's watermarks.
    """
    names = list(topics)
    newest = {} if syncs is None else read_offset_syncs(syncs.bootstrap, syncs.topic)
    target_ends = end_offsets(target_bootstrap, names)
    parts = mirror_lag(watermarks(source_bootstrap, names), target_ends, newest, offset_lag_max)
    lagging = {p.partition: p.next_offset for p in parts if p.records}
    stamps = record_timestamps(source_bootstrap, lagging)
    now_ms = int(time.time() * 1000)
    return MirrorLag(lag_per_topic(parts), seconds_per_topic(parts, stamps, now_ms), parts)


def choose_offset_syncs(target_topics: Iterable[str], source_topics: Iterable[str]) -> tuple[str, str] | None:
    """(location, topic) of the one offset-syncs topic among the clusters' topic names (pure).

    The target's are looked at first (drtopo renders `offset-syncs.topic.location = target`), then the source's;
    None when neither has one; ValueError naming them when one cluster has several (say which with `OffsetSyncs`).
    """
    for location, names in (("target", target_topics), ("source", source_topics)):
        found = sorted(n for n in names if n.startswith(OFFSET_SYNCS_PREFIX) and n.endswith(OFFSET_SYNCS_SUFFIX))
        if len(found) > 1:
            raise ValueError(f"the {location} cluster has offset-syncs topics {found}; expected one: name the flow's")
        if found:
            return location, found[0]
    return None


def find_offset_syncs(source_bootstrap: str, target_bootstrap: str) -> OffsetSyncs | None:
    """The offset syncs of the flow between the two clusters, found by topic name (see `choose_offset_syncs`)."""
    clusters = {"target": target_bootstrap, "source": source_bootstrap}
    listed = {
        location: admin_client(bootstrap).list_topics(timeout=TIMEOUT).topics
        for location, bootstrap in clusters.items()
    }
    chosen = choose_offset_syncs(listed["target"], listed["source"])
    return None if chosen is None else OffsetSyncs(clusters[chosen[0]], chosen[1])


def mirrormaker_lag(
    source_bootstrap: str,
    target_bootstrap: str,
    topics: Iterable[str],
    syncs: OffsetSyncs | None = None,
    offset_lag_max: int = DEFAULT_OFFSET_LAG_MAX,
) -> dict[str, int]:
    """MirrorMaker 2 lag per topic, in records; `syncs` found by name on the two clusters when not given."""
    where = syncs or find_offset_syncs(source_bootstrap, target_bootstrap)
    return measure_mirror_lag(source_bootstrap, target_bootstrap, topics, where, offset_lag_max).records


def group_partitions(
    committed: Mapping[Partition, int | None], watermarks: Mapping[Partition, tuple[int, int]]
) -> list[GroupPartition]:
    """Join a group's committed offsets with the partitions' (low, high) watermarks (pure).

    Every partition of the watermarks appears; a partition the group never committed has committed None.
    """
    return [GroupPartition(tp, committed.get(tp), low, high) for tp, (low, high) in sorted(watermarks.items())]


def consumer_group_lag(bootstrap: str, group: str, topics: Iterable[str]) -> list[GroupPartition]:
    """The group's committed offset, watermarks, validity and lag for every partition of `topics`."""
    names = list(topics)
    return group_partitions(committed_offsets(bootstrap, group, names), watermarks(bootstrap, names))
