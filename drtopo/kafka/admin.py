"""The Kafka admin client and the offsets it reads: partitions, end offsets, watermarks, a group's committed offsets.

Every call has a deadline (TIMEOUT); the arithmetic on what these return lives in `lag.py` and `offsets.py`.
A group's committed offsets are never read with `AdminClient.list_consumer_group_offsets`: when the group
coordinator answers NOT_COORDINATOR (right after a broker starts) librdkafka's OffsetFetch error path queues a
coordinator query on the client's consumer-group handle, which an admin client does not have, and the process dies
of SIGSEGV (librdkafka #5040, confluent-kafka-python #1982; seen with 2.16.1). A `Consumer` of the group has that
handle: librdkafka re-queries the coordinator itself, and `retry_coordinator` retries what still surfaces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec, TopicMetadata

log = logging.getLogger(__name__)

TIMEOUT = 10.0
# The group coordinator moved, is loading its offsets, or is not elected yet: asking again shortly succeeds.
COORDINATOR_BUSY = (
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
)
RETRY_PAUSE = 0.2
T = TypeVar("T")


class Partition(NamedTuple):
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


def admin_client(bootstrap: str) -> AdminClient:
    """An admin client; keep it referenced until its futures are done (they never complete once it is gone).

    librdkafka's own connection-error logs are silenced (level 2): failures reach callers as KafkaException.
    """
    log.debug("kafka admin client for %s", bootstrap)
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})


def existing_partitions(metadata: Mapping[str, TopicMetadata], topics: Iterable[str]) -> list[Partition]:
    """The partitions of `topics` present in cluster metadata (`list_topics().topics`); missing topics have none."""
    return sorted(
        Partition(name, p)
        for name in set(topics)
        if name in metadata and metadata[name].error is None
        for p in metadata[name].partitions
    )


def partitions(bootstrap: str, topics: Iterable[str]) -> list[Partition]:
    """The partitions of `topics` that exist on the cluster (missing topics have none)."""
    return existing_partitions(admin_client(bootstrap).list_topics(timeout=TIMEOUT).topics, topics)


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


def coordinator_busy(exc: KafkaException) -> bool:
    """Whether `exc` says the group coordinator is moving or not ready yet (COORDINATOR_BUSY)."""
    return bool(exc.args) and isinstance(exc.args[0], KafkaError) and exc.args[0].code() in COORDINATOR_BUSY


def retry_coordinator(call: Callable[[], T], timeout: float = TIMEOUT) -> T:
    """`call()`, again every RETRY_PAUSE s while it fails with a COORDINATOR_BUSY error, for at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            if not coordinator_busy(exc) or time.monotonic() + RETRY_PAUSE > deadline:
                raise
        time.sleep(RETRY_PAUSE)


def committed_offsets(bootstrap: str, group: str, topics: Iterable[str] | None = None) -> dict[Partition, int]:
    """The group's committed offsets on the partitions of `topics` (default: every topic on the cluster).

    Partitions without a commit are left out. Read through a `Consumer` with the group's id that never subscribes
    and never commits, so it never joins the group (`offsets.group_members` does not see it); closed afterwards.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "log_level": 2}
    )
    try:
        metadata = consumer.list_topics(timeout=TIMEOUT).topics
        names = metadata if topics is None else topics
        tps = [TopicPartition(tp.topic, tp.partition) for tp in existing_partitions(metadata, names)]
        if not tps:
            return {}
        result = retry_coordinator(lambda: _committed(consumer, tps))
    finally:
        consumer.close()
    return {Partition(tp.topic, tp.partition): tp.offset for tp in result if tp.offset >= 0 and tp.error is None}


def _committed(consumer: Consumer, tps: list[TopicPartition]) -> list[TopicPartition]:
    """One `committed` call; a partition answered with a COORDINATOR_BUSY error fails the whole call (to retry)."""
    result = consumer.committed(tps, timeout=TIMEOUT)
    for tp in result:
        if tp.error is not None and tp.error.code() in COORDINATOR_BUSY:
            raise KafkaException(tp.error)
    return result
