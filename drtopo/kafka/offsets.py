"""Consumer-group offsets across a MirrorMaker 2 flow: read its checkpoints, translate, apply them on the target.

MirrorMaker 2's checkpoint connector writes, to the target cluster's `<source-alias>.checkpoints.internal` topic,
records keyed (group, topic, partition) whose value is (upstream offset, downstream offset, metadata), serialized as
Kafka's `org.apache.kafka.connect.mirror.Checkpoint` does (Kafka protocol types: STRING = int16 length + UTF-8,
INT32/INT64 big-endian; the value starts with an int16 version, 0). The newest checkpoint per partition wins.
`scripts.promote` and `scripts.restore` both use this one implementation.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from drtopo.kafka.admin import TIMEOUT, Partition, admin_client, committed_offsets
from drtopo.report import Unsafe

CHECKPOINT_VERSION = 0
LEADERLESS = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART)


class CheckpointError(ValueError):
    """A checkpoint record that does not decode, or checkpoints that cannot be read."""


@dataclass(frozen=True)
class Checkpoint:
    group: str
    topic: str
    partition: int
    upstream_offset: int
    downstream_offset: int
    metadata: str = ""

    @property
    def topic_partition(self) -> Partition:
        return Partition(self.topic, self.partition)


@dataclass
class AppliedOffsets:
    """What `apply_group_offsets` did (or would do, when dry_run): the group's offsets before and after."""

    bootstrap: str
    group: str
    offsets: dict[Partition, int]
    previous: dict[Partition, int] = field(default_factory=dict)
    dry_run: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "bootstrap": self.bootstrap,
            "group": self.group,
            "dry_run": self.dry_run,
            "partitions": [
                {"topic": tp.topic, "partition": tp.partition, "offset": off, "previous": self.previous.get(tp)}
                for tp, off in sorted(self.offsets.items())
            ],
        }


def checkpoints_topic(source_alias: str) -> str:
    """The checkpoints topic on the target cluster of the flow from `source_alias` (MirrorMaker 2's naming)."""
    return f"{source_alias}.checkpoints.internal"


class _Reader:
    """Sequential reader of Kafka protocol primitives; raises CheckpointError when the buffer is short."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise CheckpointError(f"checkpoint {self.what} of {len(self.data)} bytes ends early at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.take(">h")
        if length < 0 or self.pos + length > len(self.data):
            raise CheckpointError(f"checkpoint {self.what} has a string of length {length} at byte {self.pos - 2}")
        text = self.data[self.pos : self.pos + length].decode("utf-8")
        self.pos += length
        return text


def decode_checkpoint(key: bytes, value: bytes) -> Checkpoint:
    """Decode one record of a checkpoints topic (pure)."""
    k = _Reader(key, "key")
    group, topic, partition = k.string(), k.string(), k.take(">i")
    v = _Reader(value, "value")
    version = v.take(">h")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint value version {version} is unknown; expected {CHECKPOINT_VERSION}")
    upstream, downstream, metadata = v.take(">q"), v.take(">q"), v.string()
    return Checkpoint(group, topic, partition, upstream, downstream, metadata)


def latest_checkpoints(checkpoints: Iterable[Checkpoint], group: str) -> dict[Partition, Checkpoint]:
    """The newest checkpoint per partition of `group`, from checkpoints in log order (pure)."""
    latest: dict[Partition, Checkpoint] = {}
    for cp in checkpoints:
        if cp.group == group:
            latest[cp.topic_partition] = cp
    return dict(sorted(latest.items()))


def translated_offsets(checkpoints: Mapping[Partition, Checkpoint]) -> dict[Partition, int]:
    """The offsets the group resumes from on the target: each partition's downstream offset (pure)."""
    return {tp: cp.downstream_offset for tp, cp in checkpoints.items()}


def read_checkpoints(bootstrap: str, source_alias: str, group: str) -> dict[Partition, Checkpoint]:
    """Read the whole checkpoints topic on the target cluster `bootstrap`; the group's newest checkpoint per partition.

    Raises CheckpointError when the topic does not exist (MirrorMaker 2 never ran its checkpoint connector there).
    """
    topic = checkpoints_topic(source_alias)
    try:
        records = read_topic(bootstrap, topic)
    except LookupError as exc:
        raise CheckpointError(f"{exc}; expected MirrorMaker 2 checkpoints there") from None
    return latest_checkpoints((decode_checkpoint(r.key, r.value) for r in records if r.key and r.value), group)


class Record(NamedTuple):
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def read_topic(bootstrap: str, topic: str, timeout: float = TIMEOUT) -> list[Record]:
    """Every record of `topic` from its low to its high watermark, in log order per partition, committing nothing.

    Raises LookupError when the topic does not exist; TimeoutError when the records stop arriving for `timeout` s.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "drtopo-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 2,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap}")
        assignment = []
        for p in metadata.partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout)
            if high > low:
                assignment.append(TopicPartition(topic, p, low))
        return _consume(consumer, assignment, timeout)
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """(low, high) of one partition, retrying while its leader is being elected (a topic just created)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() not in LEADERLESS or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _consume(consumer: Consumer, assignment: list[TopicPartition], timeout: float) -> list[Record]:
    if not assignment:
        return []
    consumer.assign(assignment)
    pending = {(tp.topic, tp.partition) for tp in assignment}
    records: list[Record] = []
    idle_since = time.monotonic()
    while pending:
        msg = consumer.poll(0.5)
        if msg is None:
            if time.monotonic() - idle_since > timeout:
                raise TimeoutError(f"reading {sorted(pending)} stalled for {timeout:.0f} s")
            continue
        idle_since = time.monotonic()
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                raise KafkaException(msg.error())
            pending.discard((msg.topic(), msg.partition()))
            continue
        records.append(Record(msg.key(), msg.value(), msg.timestamp()[1]))
    return records


def group_members(bootstrap: str, group: str) -> list[str]:
    """Client ids of the group's active members on the cluster (empty when the group is empty or unknown)."""
    admin = admin_client(bootstrap)
    description = admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result()
    return sorted(f"{m.client_id}@{m.host}" for m in description.members)


def apply_group_offsets(
    bootstrap: str, group: str, offsets: Mapping[Partition, int], dry_run: bool = False
) -> AppliedOffsets:
    """Commit `offsets` for `group` on the cluster `bootstrap`; returns what was (or would be) done.

    Refuses (Unsafe) while the group has active members there: their commits would race ours.
    """
    members = group_members(bootstrap, group)
    if members:
        raise Unsafe(
            f"consumer group {group!r} has {len(members)} active member(s) on {bootstrap} ({', '.join(members)}); "
            "stop its consumers before moving its offsets"
        )
    result = AppliedOffsets(
        bootstrap, group, dict(sorted(offsets.items())), committed_offsets(bootstrap, group), dry_run
    )
    if dry_run or not offsets:
        return result
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(tp.topic, tp.partition, off) for tp, off in result.offsets.items()]
    )
    admin = admin_client(bootstrap)
    done = admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT)[group].result()
    failed = [f"{tp.topic}-{tp.partition}: {tp.error}" for tp in done.topic_partitions or [] if tp.error is not None]
    if failed:
        raise KafkaException(f"committing offsets of group {group!r} on {bootstrap} failed: {'; '.join(failed)}")
    return result
