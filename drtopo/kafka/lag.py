"""Kafka lag, measured from offsets: MirrorMaker 2 lag per topic and a consumer group's lag and validity per partition.

MirrorMaker lag of a topic is the sum over its partitions of (source end offset - target end offset), clamped at 0:
with IdentityReplicationPolicy the mirrored topic keeps its name and, created empty on both sides, its offsets.
A consumer group's committed offset is valid on a cluster when it lies within that partition's [low, high]
watermarks; outside them the consumer would reset (lose or replay data). The arithmetic is pure; the I/O functions
only fetch offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from drtopo.kafka.admin import Partition, committed_offsets, end_offsets, watermarks


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


def mirror_lag(source_ends: Mapping[Partition, int], target_ends: Mapping[Partition, int]) -> dict[str, int]:
    """Per topic, sum over the source's partitions of (source end - target end), each clamped at 0 (pure).

    A partition missing on the target counts as an empty one: everything on the source is still to be copied.
    """
    lag: dict[str, int] = {}
    for tp, end in source_ends.items():
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - target_ends.get(tp, 0))
    return dict(sorted(lag.items()))


def group_partitions(
    committed: Mapping[Partition, int | None], watermarks: Mapping[Partition, tuple[int, int]]
) -> list[GroupPartition]:
    """Join a group's committed offsets with the partitions' (low, high) watermarks (pure).

    Every partition of the watermarks appears; a partition the group never committed has committed None.
    """
    return [GroupPartition(tp, committed.get(tp), low, high) for tp, (low, high) in sorted(watermarks.items())]


def mirrormaker_lag(source_bootstrap: str, target_bootstrap: str, topics: Iterable[str]) -> dict[str, int]:
    """MirrorMaker 2 lag per topic, in records, between the source and the target cluster."""
    names = list(topics)
    return mirror_lag(end_offsets(source_bootstrap, names), end_offsets(target_bootstrap, names))


def consumer_group_lag(bootstrap: str, group: str, topics: Iterable[str]) -> list[GroupPartition]:
    """The group's committed offset, watermarks, validity and lag for every partition of `topics`."""
    return group_partitions(committed_offsets(bootstrap, group), watermarks(bootstrap, topics))
