"""Consumer-group offsets across a MirrorMaker 2 flow: read its checkpoints and offset syncs, translate, apply them.

MirrorMaker 2's checkpoint connector writes, to the target cluster's `<source-alias>.checkpoints.internal` topic,
records keyed (group, topic, partition) whose value is (upstream offset, downstream offset, metadata), serialized as
Kafka's `org.apache.kafka.connect.mirror.Checkpoint` does (Kafka protocol types: STRING = int16 length + UTF-8,
INT32/INT64 big-endian; the value starts with an int16 version, 0). The newest checkpoint per partition wins.
Its source connector writes offset syncs (`org.apache.kafka.connect.mirror.OffsetSync`, the same encoding) to
`mm2-offset-syncs.<alias>.internal`: key (topic STRING, partition INT32), value (upstream offset INT64, downstream
offset INT64), no version; the source record at the upstream offset landed on the target at the downstream one.
`scripts.promote` and `scripts.restore` both use this one implementation; `lag.py` measures mirror lag from the syncs.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from drtopo.kafka.admin import TIMEOUT, Partition, admin_client, committed_offsets, retry_coordinator
from drtopo.report import Unsafe

CHECKPOINT_VERSION = 0
LEADERLESS = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART)


class CheckpointError(ValueError):
    """A checkpoint record that does not decode, or checkpoints that cannot be read."""


class OffsetSyncError(ValueError):
    """An offset-sync record that does not decode."""


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


@dataclass(frozen=True)
class OffsetSync:
    """Source record `upstream_offset` of the partition is the target's record `downstream_offset`."""

    topic: str
    partition: int
    upstream_offset: int
    downstream_offset: int

    @property
    def topic_partition(self) -> Partition:
        return Partition(self.topic, self.partition)


def checkpoints_topic(source_alias: str) -> str:
    """The checkpoints topic on the target cluster of the flow from `source_alias` (MirrorMaker 2's naming)."""
    return f"{source_alias}.checkpoints.internal"


OFFSET_SYNCS_PREFIX, OFFSET_SYNCS_SUFFIX = "mm2-offset-syncs.", ".internal"


def offset_syncs_topic(alias: str) -> str:
    """MirrorMaker 2's offset-syncs topic named after `alias`: the target's alias when the topic is on the source
    cluster (`offset-syncs.topic.location = source`, the default), the source's when it is on the target."""
    return f"{OFFSET_SYNCS_PREFIX}{alias}{OFFSET_SYNCS_SUFFIX}"


class _Reader:
    """Sequential reader of Kafka protocol primitives; raises `error` when the buffer is short."""

    def __init__(self, data: bytes, what: str, error: type[ValueError] = CheckpointError) -> None:
        self.data, self.pos, self.what, self.error = data, 0, what, error

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise self.error(f"{self.what} of {len(self.data)} bytes ends early at byte {self.pos}")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.take(">h")
        if length < 0 or self.pos + length > len(self.data):
            raise self.error(f"{self.what} has a string of length {length} at byte {self.pos - 2}")
        text = self.data[self.pos : self.pos + length].decode("utf-8")
        self.pos += length
        return text


def decode_checkpoint(key: bytes, value: bytes) -> Checkpoint:
    """Decode one record of a checkpoints topic (pure)."""
    k = _Reader(key, "checkpoint key")
    group, topic, partition = k.string(), k.string(), k.take(">i")
    v = _Reader(value, "checkpoint value")
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


def decode_offset_sync(key: bytes, value: bytes) -> OffsetSync:
    """Decode one record of an offset-syncs topic (pure)."""
    k = _Reader(key, "offset-sync key", OffsetSyncError)
    topic, partition = k.string(), k.take(">i")
    v = _Reader(value, "offset-sync value", OffsetSyncError)
    return OffsetSync(topic, partition, v.take(">q"), v.take(">q"))


def latest_offset_syncs(syncs: Iterable[OffsetSync]) -> dict[Partition, OffsetSync]:
    """The newest offset sync per partition, from syncs in log order (pure)."""
    return dict(sorted({sync.topic_partition: sync for sync in syncs}.items()))


def read_offset_syncs(bootstrap: str, topic: str) -> dict[Partition, OffsetSync]:
    """The newest offset sync per partition in `topic` on `bootstrap`; empty when the topic does not exist."""
    try:
        records = read_topic(bootstrap, topic)
    except LookupError:
        return {}
    return latest_offset_syncs(decode_offset_sync(r.key, r.value) for r in records if r.key and r.value)


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
    topic: str
    partition: int
    offset: int = -1


def read_topic(bootstrap: str, topic: str, timeout: float = TIMEOUT, since_ms: int | None = None) -> list[Record]:
    """Every record of `topic` from its low to its high watermark, in log order per partition, committing nothing;
    with `since_ms` (epoch ms), from each partition's first record at or after that time (the broker's time index).

    Raises LookupError when the topic does not exist; TimeoutError when the records stop arriving for `timeout` s.
    """
    consumer = _reader(bootstrap)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap}")
        starts: dict[int, int] = {}
        if since_ms is not None:
            asked = [TopicPartition(topic, p, since_ms) for p in metadata.partitions]
            # -1: no record at or after the time in that partition.
            starts = {tp.partition: tp.offset for tp in consumer.offsets_for_times(asked, timeout=timeout)}
        assignment = []
        for p in metadata.partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout)
            start = low if since_ms is None else (high if starts.get(p, -1) < 0 else max(low, starts[p]))
            if high > start:
                assignment.append(TopicPartition(topic, p, start))
        return _consume(consumer, assignment, timeout)
    finally:
        consumer.close()


def record_timestamps(
    bootstrap: str, offsets: Mapping[Partition, int], timeout: float = TIMEOUT
) -> dict[Partition, int]:
    """Timestamp (ms) of the record at each partition's given offset, or of the next one still in the log.

    A partition whose log ends before its offset is left out; TimeoutError when the records stop arriving.
    """
    if not offsets:
        return {}
    consumer = _reader(bootstrap)
    try:
        assignment = [TopicPartition(tp.topic, tp.partition, offset) for tp, offset in sorted(offsets.items())]
        records = _consume(consumer, assignment, timeout, first_only=True)
    finally:
        consumer.close()
    return {Partition(r.topic, r.partition): r.timestamp_ms for r in records}


def _reader(bootstrap: str) -> Consumer:
    """A consumer that only reads assigned partitions: it never subscribes, never commits, reports partition EOF."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "drtopo-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "log_level": 2,
        }
    )


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


def _consume(
    consumer: Consumer, assignment: list[TopicPartition], timeout: float, first_only: bool = False
) -> list[Record]:
    """Records of the assigned partitions up to each one's end, or (`first_only`) the first record of each."""
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
        records.append(Record(msg.key(), msg.value(), msg.timestamp()[1], msg.topic(), msg.partition(), msg.offset()))
        if first_only:
            pending.discard((msg.topic(), msg.partition()))
    return records


def group_members(bootstrap: str, group: str) -> list[str]:
    """Client ids of the group's active members on the cluster (empty when the group is empty or unknown).

    DescribeGroups has no consumer-group handle to crash on (only OffsetFetch does); a coordinator still moving is
    asked again.
    """
    admin = admin_client(bootstrap)
    description = retry_coordinator(
        lambda: admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result()
    )
    return sorted(f"{m.client_id}@{m.host}" for m in description.members)


def apply_group_offsets(
    bootstrap: str, group: str, offsets: Mapping[Partition, int], dry_run: bool = False
) -> AppliedOffsets:
    """Commit `offsets` for `group` on the cluster `bootstrap`; returns what was (or would be) done.

    Refuses (Unsafe) while the group has active members there: their commits would race ours. The previous offsets
    are read through `admin.committed_offsets` (no admin OffsetFetch, see admin.py); the commit itself goes through
    the admin client, whose OffsetCommit error path checks for a missing consumer-group handle, and is retried (it is
    idempotent) while the coordinator moves.
    """
    members = group_members(bootstrap, group)
    if members:
        raise Unsafe(
            f"consumer group {group!r} has {len(members)} active member(s) on {bootstrap} ({', '.join(members)}); "
            "stop its consumers before moving its offsets"
        )
    previous = committed_offsets(bootstrap, group, {tp.topic for tp in offsets})
    result = AppliedOffsets(bootstrap, group, dict(sorted(offsets.items())), previous, dry_run)
    if dry_run or not offsets:
        return result
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(tp.topic, tp.partition, off) for tp, off in result.offsets.items()]
    )
    admin = admin_client(bootstrap)
    done = retry_coordinator(
        lambda: admin.alter_consumer_group_offsets([request], request_timeout=TIMEOUT)[group].result()
    )
    failed = [f"{tp.topic}-{tp.partition}: {tp.error}" for tp in done.topic_partitions or [] if tp.error is not None]
    if failed:
        raise KafkaException(f"committing offsets of group {group!r} on {bootstrap} failed: {'; '.join(failed)}")
    return result
