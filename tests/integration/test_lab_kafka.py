"""Real Kafka in the lab: two KRaft clusters and MirrorMaker 2 running the dr stack's rendered properties.

Records cross the mirror; a group's commit on the source becomes a checkpoint on the backup cluster that
drtopo.kafka.offsets translates to the offset of the same record there; offsets apply (and refuse while the group is
active); MirrorMaker lag is 0 when caught up and counts the records produced while it is stopped; stopping a cluster
leaves no process or port, and a restart keeps its address, topics and group offsets, read at once (while the
coordinator may still answer NOT_COORDINATOR). One set of servers serves the whole module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from drtopo.kafka import admin as kafka_admin
from drtopo.kafka import lag as kafka_lag
from drtopo.kafka.admin import Partition
from drtopo.kafka.offsets import Checkpoint, CheckpointError, apply_group_offsets, read_checkpoints, translated_offsets
from drtopo.mm2_properties import mirror_flow
from drtopo.report import Unsafe
from drtopo.settings import Settings, load_settings
from lab import kafka, process

pytestmark = pytest.mark.lab

# Short discovery and checkpoint intervals keep the module to about a minute and a half; the text MirrorMaker runs
# is still exactly what render_mm2_properties produces for the dr stack.
MIRROR = {
    "replicationFactor": 1,
    "emitCheckpointsIntervalSeconds": 2,
    "syncGroupOffsetsIntervalSeconds": 2,
    "refreshTopicsIntervalSeconds": 5,
    "refreshGroupsIntervalSeconds": 5,
}


@dataclass
class Pair:
    root: Path
    settings: Settings
    source: kafka.Cluster
    backup: kafka.Cluster
    properties: str
    timings: dict[str, float]

    @property
    def source_alias(self) -> str:
        return mirror_flow(self.settings)[0]


def timed(timings: dict[str, float], name: str, fn, *args):  # type: ignore[no-untyped-def]
    start = time.monotonic()
    result = fn(*args)
    timings[name] = round(time.monotonic() - start, 2)
    return result


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("kafka-lab")
    timings: dict[str, float] = {}
    try:
        clusters = timed(timings, "start both clusters", kafka.start_clusters, root, ["prod", "dr"])
        source, backup = clusters["prod"], clusters["dr"]
        settings = load_settings(
            "dr",
            overrides={
                "kafka": {
                    "bootstrapServers": backup.bootstrap,
                    "peerBootstrapServers": source.bootstrap,
                    "topics": [{"name": t.name, "replicationFactor": 1} for t in load_settings("dr").kafka.topics],
                    "mirror": MIRROR,
                }
            },
        )
        for cluster in (source, backup):
            kafka.create_topics(cluster.bootstrap, settings.kafka.topics)
        text = kafka.mirrormaker_properties(settings, source.bootstrap, backup.bootstrap)
        timed(timings, "start mirrormaker", kafka.start_mirrormaker, root, text)
        print(f"\nlab kafka start-up (s): {timings}")
        yield Pair(root, settings, source, backup, text, timings)
    finally:
        kafka.stop_mirrormaker(root)
        for name in ("prod", "dr"):
            kafka.stop_cluster(root, name)


def produce(bootstrap: str, topic: str, keys: list[str], partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for key in keys:
        kwargs = {"partition": partition} if partition is not None else {}
        producer.produce(topic, key=key.encode(), value=f"value-{key}".encode(), **kwargs)
    assert producer.flush(15) == 0


def read_all(bootstrap: str, topic: str) -> list[tuple[int, int, str, str]]:
    """(partition, offset, key, value) of every record of `topic`."""
    return [
        (m.partition(), m.offset(), m.key().decode(), m.value().decode())
        for m in _records(bootstrap, topic)
        if m.key() is not None and m.value() is not None
    ]


def _records(bootstrap: str, topic: str):  # type: ignore[no-untyped-def]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts if ends[p] > 0])
        records = []
        deadline = time.monotonic() + 20
        while len(records) < sum(ends.values()) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                records.append(msg)
        return records
    finally:
        consumer.close()


def wait_for(what: str, check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


def test_records_produced_on_the_source_appear_on_the_backup_cluster(pair: Pair) -> None:
    keys = [f"rejected-{i}" for i in range(30)]
    produce(pair.source.bootstrap, "OrderRejected", keys)
    waited = kafka.wait_mirroring(pair.source.bootstrap, pair.backup.bootstrap, "OrderRejected", timeout=60)
    print(f"\nmirrored 30 records in {waited:.2f} s")
    # IdentityReplicationPolicy: the same topic name, and the same records at the same partitions and offsets.
    assert sorted(read_all(pair.backup.bootstrap, "OrderRejected")) == sorted(
        read_all(pair.source.bootstrap, "OrderRejected")
    )
    assert {k for _, _, k, _ in read_all(pair.backup.bootstrap, "OrderRejected")} == set(keys)


def test_group_commit_on_the_source_is_checkpointed_and_translated(pair: Pair) -> None:
    group, topic = pair.settings.kafka.consumer_group, "ExceptionCaptured"
    # 102 records: MirrorMaker emits offset syncs at the first record and 100 records later, so the commit at the
    # end translates exactly (between syncs MirrorMaker translates conservatively, to just after the older sync).
    produce(pair.source.bootstrap, topic, [f"captured-{i}" for i in range(102)], partition=0)
    consumer = Consumer({"bootstrap.servers": pair.source.bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    last = None
    deadline = time.monotonic() + 60
    while last is None or last.offset() < 101:
        assert time.monotonic() < deadline, f"{topic}-0 not read up to offset 101 within 60 s (last: {last})"
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            last = msg
    consumer.commit(message=last, asynchronous=False)
    consumer.close()
    tp = Partition(topic, 0)

    def checkpoint() -> Checkpoint | None:
        try:
            cp = read_checkpoints(pair.backup.bootstrap, pair.source_alias, group).get(tp)
        except CheckpointError:
            return None
        return cp if cp is not None and cp.upstream_offset == 102 and cp.downstream_offset == 102 else None

    cp = wait_for("checkpoint of upstream offset 102", checkpoint, timeout=60)
    assert translated_offsets({tp: cp}) == {tp: 102}
    # The translated offset points just past the same record on the backup cluster: nothing skipped, nothing replayed.
    backup_records = {(p, o): k for p, o, k, _ in read_all(pair.backup.bootstrap, topic)}
    assert backup_records[(0, cp.downstream_offset - 1)] == last.key().decode() == "captured-101"


def test_apply_group_offsets_commits_them_and_refuses_an_active_group(pair: Pair) -> None:
    group, tp = "drtopo-test-apply", Partition("ExceptionCaptured", 0)
    planned = apply_group_offsets(pair.backup.bootstrap, group, {tp: 50}, dry_run=True)
    assert planned.dry_run and planned.offsets == {tp: 50} and planned.previous == {}
    assert kafka_admin.committed_offsets(pair.backup.bootstrap, group) == {}

    applied = apply_group_offsets(pair.backup.bootstrap, group, {tp: 50})
    assert applied.previous == {}
    assert kafka_admin.committed_offsets(pair.backup.bootstrap, group) == {tp: 50}
    lag = {p.partition: p for p in kafka_lag.consumer_group_lag(pair.backup.bootstrap, group, [tp.topic])}
    assert lag[tp].valid and lag[tp].lag == lag[tp].high - 50

    member = Consumer(
        {
            "bootstrap.servers": pair.backup.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    member.subscribe([tp.topic])
    try:
        wait_for("consumer joins the group", lambda: member.poll(0.5) is not None or member.assignment(), 30)
        with pytest.raises(Unsafe, match="active member"):
            apply_group_offsets(pair.backup.bootstrap, group, {tp: 0})
    finally:
        member.close()
    assert kafka_admin.committed_offsets(pair.backup.bootstrap, group)[tp] == 50


def test_mirror_lag_is_zero_when_caught_up_and_counts_records_while_mirrormaker_is_stopped(pair: Pair) -> None:
    topics = pair.settings.kafka.mirrored_topics
    for topic in topics:
        kafka.wait_mirroring(pair.source.bootstrap, pair.backup.bootstrap, topic, timeout=60)
    assert kafka_lag.mirrormaker_lag(pair.source.bootstrap, pair.backup.bootstrap, topics) == dict.fromkeys(
        sorted(topics), 0
    )
    kafka.stop_mirrormaker(pair.root)
    assert not kafka.mirrormaker_running(pair.root)
    produce(pair.source.bootstrap, "ValidationError", [f"late-{i}" for i in range(7)])
    lag = kafka_lag.mirrormaker_lag(pair.source.bootstrap, pair.backup.bootstrap, topics)
    assert lag["ValidationError"] == 7
    assert sum(lag.values()) == 7

    timed(pair.timings, "restart mirrormaker", kafka.start_mirrormaker, pair.root, pair.properties)
    kafka.wait_mirroring(pair.source.bootstrap, pair.backup.bootstrap, "ValidationError", timeout=60)
    assert kafka_lag.mirrormaker_lag(pair.source.bootstrap, pair.backup.bootstrap, ["ValidationError"]) == {
        "ValidationError": 0
    }


def test_stop_cluster_leaves_no_process_or_port_and_a_restart_keeps_address_and_topics(pair: Pair) -> None:
    kafka.stop_mirrormaker(pair.root)
    pid = process.read_pid(pair.root, kafka.process_name("dr"))
    assert pid is not None and process.alive(pid)
    kafka.stop_cluster(pair.root, "dr")
    assert not process.alive(pid)
    assert not process.port_open(pair.backup.port) and not process.port_open(pair.backup.controller_port)
    assert not kafka.cluster_running(pair.root, "dr")

    again = timed(pair.timings, "restart dr cluster", kafka.start_cluster, pair.root, "dr")
    assert again.bootstrap == pair.backup.bootstrap
    assert {p.topic for p in kafka_admin.partitions(again.bootstrap, pair.settings.kafka.mirrored_topics)} == set(
        pair.settings.kafka.mirrored_topics
    )
    applied = Partition("ExceptionCaptured", 0)  # committed by test_apply_group_offsets_commits_them_and_refuses...
    assert kafka_admin.committed_offsets(again.bootstrap, "drtopo-test-apply") == {applied: 50}
    assert len(read_all(again.bootstrap, "OrderRejected")) == 30
    print(f"\nlab kafka timings (s): {pair.timings}")
