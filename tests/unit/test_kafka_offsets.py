"""MirrorMaker 2 checkpoint and offset-sync records decode as Kafka's Checkpoint and OffsetSync classes write them;
the newest per partition wins."""

from __future__ import annotations

import struct

import pytest

from drtopo.kafka.admin import Partition
from drtopo.kafka.offsets import (
    Checkpoint,
    CheckpointError,
    OffsetSync,
    OffsetSyncError,
    checkpoints_topic,
    decode_checkpoint,
    decode_offset_sync,
    latest_checkpoints,
    latest_offset_syncs,
    offset_syncs_topic,
    translated_offsets,
)


def kafka_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def key(group: str, topic: str, partition: int) -> bytes:
    return kafka_string(group) + kafka_string(topic) + struct.pack(">i", partition)


def value(upstream: int, downstream: int, metadata: str = "", version: int = 0) -> bytes:
    return struct.pack(">hqq", version, upstream, downstream) + kafka_string(metadata)


def test_decodes_key_and_value() -> None:
    cp = decode_checkpoint(key("interface-exception-collector", "OrderRejected", 2), value(1500, 1498, "meta"))
    assert cp == Checkpoint("interface-exception-collector", "OrderRejected", 2, 1500, 1498, "meta")
    assert cp.topic_partition == Partition("OrderRejected", 2)


def test_decodes_utf8_names_and_large_offsets() -> None:
    cp = decode_checkpoint(key("grüppe", "Tópic", 0), value(2**40, 2**40 - 7))
    assert (cp.group, cp.topic, cp.upstream_offset, cp.downstream_offset) == ("grüppe", "Tópic", 2**40, 2**40 - 7)


@pytest.mark.parametrize(
    ("raw_key", "raw_value", "message"),
    [
        (key("g", "t", 0)[:-2], value(1, 1), "key of"),
        (key("g", "t", 0), value(1, 1)[:10], "value of"),
        (key("g", "t", 0), value(1, 1, version=1), "version 1 is unknown"),
        (struct.pack(">h", 50) + b"short", value(1, 1), "string of length 50"),
    ],
)
def test_malformed_records_are_rejected_naming_the_problem(raw_key: bytes, raw_value: bytes, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        decode_checkpoint(raw_key, raw_value)


def test_latest_checkpoint_per_partition_wins_and_other_groups_are_ignored() -> None:
    log = [
        Checkpoint("g", "A", 0, 10, 9),
        Checkpoint("g", "A", 1, 5, 5),
        Checkpoint("other", "A", 0, 99, 99),
        Checkpoint("g", "A", 0, 20, 19),
    ]
    latest = latest_checkpoints(log, "g")
    assert translated_offsets(latest) == {Partition("A", 0): 19, Partition("A", 1): 5}


def test_checkpoints_topic_follows_mirrormaker_naming() -> None:
    assert checkpoints_topic("us-east-1") == "us-east-1.checkpoints.internal"


def sync_key(topic: str, partition: int) -> bytes:
    return kafka_string(topic) + struct.pack(">i", partition)


def test_decodes_an_offset_sync_as_kafka_writes_it() -> None:
    # OffsetSync.KEY_SCHEMA (topic STRING, partition INT32), VALUE_SCHEMA (upstreamOffset INT64, offset INT64).
    raw_key = bytes.fromhex("000d") + b"OrderRejected" + bytes.fromhex("00000002")
    raw_value = bytes.fromhex("00000000000005dc 00000000000005da")  # upstream 1500, downstream 1498
    assert decode_offset_sync(raw_key, raw_value) == OffsetSync("OrderRejected", 2, 1500, 1498)
    assert decode_offset_sync(raw_key, raw_value).topic_partition == Partition("OrderRejected", 2)


@pytest.mark.parametrize(
    ("raw_key", "raw_value", "message"),
    [
        (sync_key("t", 0)[:-1], struct.pack(">qq", 1, 1), "offset-sync key of 6 bytes ends early"),
        (sync_key("t", 0), struct.pack(">qq", 1, 1)[:12], "offset-sync value of 12 bytes ends early at byte 8"),
        (struct.pack(">h", 9) + b"abc", struct.pack(">qq", 1, 1), "offset-sync key has a string of length 9"),
    ],
)
def test_malformed_offset_syncs_are_rejected_naming_the_problem(raw_key: bytes, raw_value: bytes, message: str) -> None:
    with pytest.raises(OffsetSyncError, match=message):
        decode_offset_sync(raw_key, raw_value)


def test_latest_offset_sync_per_partition_wins() -> None:
    log = [OffsetSync("A", 0, 0, 0), OffsetSync("A", 1, 4, 4), OffsetSync("A", 0, 11, 11)]
    assert latest_offset_syncs(log) == {Partition("A", 0): log[2], Partition("A", 1): log[1]}


def test_offset_syncs_topic_follows_mirrormaker_naming() -> None:
    assert offset_syncs_topic("us-east-1") == "mm2-offset-syncs.us-east-1.internal"
