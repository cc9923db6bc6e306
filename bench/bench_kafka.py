"""Benchmark of the lab's Kafka: jar download, cluster and MirrorMaker 2 start-up, mirror and checkpoint latency.

`python -m bench.bench_kafka [--cold]` starts two single-broker KRaft clusters and MirrorMaker 2 (the dr stack's
rendered properties, replication factor 1) in a temporary root, then measures: both clusters' start (parallel),
MirrorMaker until its source tasks run, 1000 records until all are on the backup cluster, a consumer group's commit
until its checkpoint is translated there, a cluster restart, and each stop. `--cold` first resolves the jars from
Maven Central into an empty temporary cache. Everything it starts is stopped before it exits.
Goals on a 2-core machine: warm clusters + MirrorMaker under 30 s, mirror latency under 2 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from confluent_kafka import Consumer, Producer, TopicPartition

from drtopo.kafka.admin import Partition
from drtopo.kafka.offsets import CheckpointError, read_checkpoints
from drtopo.mm2_properties import mirror_flow
from drtopo.settings import load_settings
from lab import jars, kafka

T = TypeVar("T")
TOPIC = "OrderRejected"
RECORDS = 1000


def timed(figures: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    start = time.monotonic()
    result = fn()
    figures[name] = round(time.monotonic() - start, 2)
    print(f"{name:<45} {figures[name]:>7.2f} s", flush=True)
    return result


def poll_until(check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f} s")
        time.sleep(0.1)


def cold_download(figures: dict[str, float]) -> None:
    with tempfile.TemporaryDirectory(prefix="drtopo-jars-") as cache:
        saved = os.environ.get("DRTOPO_CACHE_DIR")
        os.environ["DRTOPO_CACHE_DIR"] = cache
        try:
            timed(figures, f"jars: cold download of Kafka {jars.KAFKA_VERSION}", jars.ensure_jars)
        finally:
            if saved is None:
                os.environ.pop("DRTOPO_CACHE_DIR")
            else:
                os.environ["DRTOPO_CACHE_DIR"] = saved


def run(root: Path, figures: dict[str, float]) -> None:
    timed(figures, "jars: warm check", jars.ensure_jars)
    clusters = timed(figures, "start prod + dr clusters (parallel)", lambda: kafka.start_clusters(root, ["prod", "dr"]))
    source, backup = clusters["prod"], clusters["dr"]
    topics = [{"name": t.name, "replicationFactor": 1} for t in load_settings("dr").kafka.topics]
    mirror = {"replicationFactor": 1, "refreshGroupsIntervalSeconds": 5, "emitCheckpointsIntervalSeconds": 2}
    overrides = {"bootstrapServers": backup.bootstrap, "peerBootstrapServers": source.bootstrap}
    settings = load_settings("dr", overrides={"kafka": {**overrides, "topics": topics, "mirror": mirror}})
    timed(
        figures,
        "create topics on both clusters",
        lambda: [kafka.create_topics(c.bootstrap, settings.kafka.topics) for c in (source, backup)],
    )
    text = kafka.mirrormaker_properties(settings, source.bootstrap, backup.bootstrap)
    timed(figures, "start mirrormaker (until source tasks run)", lambda: kafka.start_mirrormaker(root, text))

    producer = Producer({"bootstrap.servers": source.bootstrap, "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(TOPIC, key=f"k{i}".encode(), value=b"x" * 200, partition=0)
    producer.flush(30)
    timed(
        figures, f"{RECORDS} records mirrored", lambda: kafka.wait_mirroring(source.bootstrap, backup.bootstrap, TOPIC)
    )

    group = settings.kafka.consumer_group
    consumer = Consumer({"bootstrap.servers": source.bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(TOPIC, 0, RECORDS)], asynchronous=False)
    consumer.close()
    alias = mirror_flow(settings)[0]

    def translated() -> bool:
        try:
            cps = read_checkpoints(backup.bootstrap, alias, group)
        except CheckpointError:
            return False
        cp = cps.get(Partition(TOPIC, 0))
        return cp is not None and cp.upstream_offset == RECORDS

    timed(figures, "group commit until checkpoint on backup", lambda: poll_until(translated))
    timed(figures, "stop mirrormaker", lambda: kafka.stop_mirrormaker(root))
    timed(figures, "stop dr cluster", lambda: kafka.stop_cluster(root, "dr"))
    timed(figures, "restart dr cluster (data kept)", lambda: kafka.start_cluster(root, "dr"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_kafka", description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time resolving the jars into an empty cache")
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}
    if args.cold:
        cold_download(figures)
    with tempfile.TemporaryDirectory(prefix="drtopo-bench-kafka-") as tmp:
        root = Path(tmp)
        try:
            run(root, figures)
        finally:
            kafka.stop_mirrormaker(root)
            for name in ("prod", "dr"):
                kafka.stop_cluster(root, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
