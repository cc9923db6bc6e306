"""kafka-cluster-failure: the source Kafka cluster dies; consumers continue on the backup cluster.

Producers switch to the backup cluster; the consumer group moves there at the offsets MirrorMaker 2's checkpoints
translate (`scripts.restore consumer-offsets`), not at latest. Messages acknowledged on the source but never consumed
anywhere are lost; messages consumed twice are duplicates. RTO is from the failure to the first message consumed on
the backup cluster.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from drtopo.kafka.offsets import CheckpointError, read_checkpoints
from drtopo.mm2_properties import cluster_alias
from scripts.drill.loadgen import QUIET_LOG, track, untrack
from scripts.drill.report import ScenarioResult
from scripts.drill.scenarios.context import DrillContext

NAME = "kafka-cluster-failure"
TOPIC = "ExceptionCaptured"


class GroupConsumer(threading.Thread):
    """The service's consumer group on one cluster, committing after each batch it handled."""

    def __init__(self, bootstrap: str, group: str, seen: Counter[str], first_at: list[float]) -> None:
        super().__init__(name=f"consumer-{bootstrap}", daemon=True)
        self.bootstrap, self.group, self.seen, self.first_at = bootstrap, group, seen, first_at
        self._halt = threading.Event()
        track(self)

    def run(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "logger": QUIET_LOG,
            }
        )
        consumer.subscribe([TOPIC])
        try:
            while not self._halt.is_set():
                # A batch at a time, committed once handled: thousands of messages a second without a commit each
                # (what was handled but not yet committed when the cluster dies is read again on the backup).
                handled = [m for m in consumer.consume(num_messages=500, timeout=0.2) if not m.error()]
                if not handled:
                    continue
                for msg in handled:
                    self.seen[msg.key().decode()] += 1
                if not self.first_at:
                    self.first_at.append(time.time())
                consumer.commit(asynchronous=True)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=15)
        untrack(self)


def wait_for_checkpoint(bootstrap: str, source_alias: str, group: str, timeout: float) -> None:
    """Until MirrorMaker 2 has checkpointed the group's commits on TOPIC on `bootstrap` (TimeoutError after)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(tp.topic == TOPIC for tp in read_checkpoints(bootstrap, source_alias, group)):
                return
        except CheckpointError:
            pass  # the checkpoints topic does not exist yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"no checkpoint of group {group!r} on {TOPIC} at {bootstrap} within {timeout:.0f} s")
        time.sleep(0.5)


def run(ctx: DrillContext, result: ScenarioResult) -> None:
    clock = ctx.clock()
    group = ctx.settings("prod").kafka.consumer_group
    source, backup = ctx.lab.kafka_bootstrap("prod"), ctx.lab.kafka_bootstrap("dr")
    failed = threading.Event()
    producer = ctx.message_producer(lambda: backup if failed.is_set() else source, TOPIC, prefix="kafka")
    seen: Counter[str] = Counter()
    on_source: list[float] = []
    on_backup: list[float] = []
    consumer = GroupConsumer(source, group, seen, on_source)
    mirror = ctx.settings("dr").kafka.mirror
    # MirrorMaker must notice the new group, then emit a checkpoint for its commits: at least these intervals, and on
    # a loaded machine longer, so wait for the checkpoint itself (bounded).
    checkpoint_wait = mirror.refresh_groups_interval_seconds + mirror.emit_checkpoints_interval_seconds + 3
    source_alias = cluster_alias(ctx.settings("prod").region)
    with clock.step(f"produce and consume on the source cluster (at least {checkpoint_wait} s, until checkpointed)"):
        producer.start()
        consumer.start()
        time.sleep(checkpoint_wait)
        wait_for_checkpoint(backup, source_alias, group, timeout=60)
    failure_at = time.time()
    result.measured["failure_at_seconds"] = round(clock.elapsed(), 3)
    with clock.step("source cluster dies"):
        ctx.lab.stop_kafka("prod")
        failed.set()
        consumer.stop()
    with clock.step("scripts.restore consumer-offsets --stack dr"):
        code = ctx.run(
            "restore",
            [
                "consumer-offsets",
                "--stack",
                "dr",
                "--outputs",
                str(ctx.outputs_path("dr")),
                "--json",
                str(ctx.json_dir / "consumer-offsets.json"),
            ],
        )
    result.checks.check("consumer offsets translated", code == 0, f"exit code {code}", code, 0)
    backup_consumer = GroupConsumer(backup, group, seen, on_backup)
    acked_before = [a for a in producer.stats.acks if a.at <= failure_at]
    with clock.step("consume on the backup cluster until every acknowledged message is seen (30 s at most)"):
        backup_consumer.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(seen[a.key] == 0 for a in acked_before):
            time.sleep(0.2)
        time.sleep(2)
    stats = producer.stop()
    backup_consumer.stop()
    lost = [a for a in stats.acks if seen[a.key] == 0 and a.at <= failure_at]
    duplicates = sum(1 for a in stats.acks if seen[a.key] > 1)
    oldest_lost = min((x.at for x in lost), default=float("inf"))
    kept = [a.at for a in acked_before if seen[a.key] > 0 and a.at < oldest_lost]
    rpo = 0.0 if not lost else max(a.at for a in lost) - (max(kept) if kept else min(a.at for a in lost))
    after = [a for a in stats.acks if a.at > failure_at]
    result.measured.update(
        rto_seconds=round(on_backup[0] - failure_at, 3) if on_backup else None,
        rpo_seconds=round(rpo, 3),
        rows_lost=len(lost),
        messages_acknowledged=len(stats.acks),
        messages_lost=len(lost),
        messages_duplicated=duplicates,
        messages_reread=duplicates,
        messages_after_failure_consumed=sum(1 for a in after if seen[a.key] > 0),
    )
    result.checks.check("consumers continued on the backup cluster", bool(on_backup), "a message was consumed there")
    result.steps = clock.steps
