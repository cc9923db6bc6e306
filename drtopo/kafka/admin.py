"""The Kafka admin client and the offsets it reads: partitions, end offsets, watermarks, a group's committed offsets.

Every call has a deadline (TIMEOUT); the arithmetic on what these return lives in `lag.py` and `offsets.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

TIMEOUT = 10.0


class Partition(NamedTuple):
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


def admin_client(bootstrap: str) -> AdminClient:
    """An admin client; keep it referenced until its futures are done (they never complete once it is gone).

    librdkafka's own connection-error logs are silenced (level 2): failures reach callers as KafkaException.
    """
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})


def partitions(bootstrap: str, topics: Iterable[str]) -> list[Partition]:
    """The partitions of `topics` that exist on the cluster (missing topics have none)."""
    metadata = admin_client(bootstrap).list_topics(timeout=TIMEOUT).topics
    return sorted(
        Partition(name, p)
        for name in topics
        if name in metadata and metadata[name].error is None
        for p in metadata[name].partitions
    )


def _list_offsets(bootstrap: str, tps: list[Partition], spec: OffsetSpec) -> dict[Partition, int]:
    if not tps:
        return {}
    admin = admin_client(bootstrap)
    futures = admin.list_offsets({TopicPartition(tp.topic, tp.partition): spec for tp in tps}, request_timeout=TIMEOUT)
    return {Partition(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[Partition, int]:
    """High watermark of every partition of `topics` on the cluster."""
    return _list_offsets(bootstrap, partitions(bootstrap, topics), OffsetSpec.latest())


def watermarks(bootstrap: str, topics: Iterable[str]) -> dict[Partition, tuple[int, int]]:
    """(low, high) watermarks of every partition of `topics` on the cluster."""
    tps = partitions(bootstrap, topics)
    low = _list_offsets(bootstrap, tps, OffsetSpec.earliest())
    high = _list_offsets(bootstrap, tps, OffsetSpec.latest())
    return {tp: (low[tp], high[tp]) for tp in tps}


def committed_offsets(bootstrap: str, group: str) -> dict[Partition, int]:
    """The group's committed offsets on the cluster (partitions without a commit are left out)."""
    admin = admin_client(bootstrap)
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=TIMEOUT)[group]
    try:
        result = future.result()
    except KafkaException as exc:
        if exc.args[0].name() in ("GROUP_ID_NOT_FOUND", "COORDINATOR_NOT_AVAILABLE"):
            return {}
        raise
    return {
        Partition(tp.topic, tp.partition): tp.offset
        for tp in result.topic_partitions or []
        if tp.offset >= 0 and tp.error is None
    }
