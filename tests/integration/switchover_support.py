"""What the promote, failback and restore tests share besides bench/switchover.py: the Kafka clusters' state and
MirrorMaker 2's checkpoints of a consumer group."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from drtopo.kafka.admin import Partition
from drtopo.kafka.offsets import group_members, read_checkpoints
from drtopo.settings import load_settings
from lab.core import Lab
from lab.project import LAB_STACKS as STACKS


def stop_collectors(lab: Lab) -> None:
    """Both regions' service stand-ins scaled to 0, and their group empty on both clusters: the collector leaves it on
    SIGTERM, and one killed before it could stays a member until its session timeout (waited for, bounded)."""
    for stack in STACKS:
        lab.region(stack).service.stop()
    group = load_settings("prod", lab.project_dir).kafka.consumer_group
    deadline = time.monotonic() + 20
    while any(group_members(lab.region(s).kafka.bootstrap, group) for s in STACKS):
        assert time.monotonic() < deadline, f"group {group} still has members 20 s after its collectors stopped"
        time.sleep(0.5)


@contextmanager
def collectors_paused(lab: Lab) -> Iterator[None]:
    """The collectors stopped (stop_collectors) while a test plays the service's consumer group by hand: the
    collector is a member of that group on its region's cluster, and a commit from outside an active group is
    refused (and its own commits would move the checkpoints the test expects). A promote inside starts the new
    primary's again (its application step): stop_collectors once more before playing the group there. Afterwards
    each stand-in is back at the count its stack's role declares now (the standby's 0, pilot light): one started in
    the standby region would join the group there the moment a later promote makes its database writable."""
    stop_collectors(lab)
    try:
        yield
    finally:
        for stack in STACKS:
            service = lab.region(stack).service
            if service.declared_replicas():
                service.start()
            else:
                service.stop()


def applied_offsets(report: dict[str, Any]) -> dict[Partition, int]:
    """The offsets a promote's or failback's consumer-group step applied, as its report says (the live group moves
    on as soon as the application it scaled up consumes)."""
    moved = report["measured"]["consumer_group"]
    return {Partition(p["topic"], p["partition"]): p["offset"] for p in moved["partitions"]}


def kafka_running(lab: Lab) -> bool:
    servers = lab.status()["servers"]
    return all(servers.get(f"kafka-{s}", {}).get("running") for s in STACKS)


def consume_and_wait_for_checkpoints(
    lab: Lab, topic: str, group: str, source_alias: str, source_stack: str = "prod", target_stack: str = "dr"
) -> dict[Partition, int]:
    """Produce 40 messages on the source stack's cluster, commit the group part-way, wait until MirrorMaker 2
    checkpoints exactly that on the target's cluster; returns the translated (downstream) offsets to resume from."""
    source, backup = lab.region(source_stack).kafka.bootstrap, lab.region(target_stack).kafka.bootstrap
    producer = Producer({"bootstrap.servers": source, "acks": "all"})
    for i in range(40):
        producer.produce(topic, key=f"promote-{i}".encode(), value=b"x", partition=i % 3)
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": source, "group.id": group, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    seen, deadline = 0, time.monotonic() + 30
    while seen < 25 and time.monotonic() < deadline:
        seen += consumer.poll(1.0) is not None
    consumer.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in range(3)])}
    consumer.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = read_checkpoints(backup, source_alias, group)
        ours = {tp: cp for tp, cp in found.items() if tp.topic == topic}
        if {tp.partition: cp.upstream_offset for tp, cp in ours.items()} == {
            p: o for p, o in committed.items() if o >= 0
        }:
            return {tp: cp.downstream_offset for tp, cp in ours.items()}
        time.sleep(1)
    raise AssertionError(f"no checkpoint of {committed} on {target_stack}'s cluster within 60 s")
