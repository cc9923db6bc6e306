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
from dataclasses import dataclass, field

from drtopo.kafka.offsets import CheckpointError, read_checkpoints
from drtopo.mm2_properties import cluster_alias
from scripts.drill.loadgen import QUIET_LOG, MessageProducer, track, untrack
from scripts.drill.measured import Figures
from scripts.drill.scenarios import phases
from scripts.drill.scenarios.context import exit_detail
from scripts.drill.scenarios.scenario import Scenario, ScenarioRun

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


@dataclass
class KafkaFigures(Figures):
    messages_duplicated: int  # consumed more than once
    messages_after_failure_consumed: int  # produced to the backup cluster after the failure, and consumed there


@dataclass
class _Clusters:
    group: str
    backup: str  # the backup cluster's bootstrap servers
    producer: MessageProducer
    seen: Counter[str]  # message key -> times consumed, on either cluster
    failure_at: float
    on_backup: list[float] = field(default_factory=list)  # when the first message was consumed on the backup


class KafkaClusterFailure(Scenario[_Clusters]):
    name = "kafka-cluster-failure"
    objectives_key = "kafka_cluster_failure"
    order = 4
    writes_rows = False
    produces_to_kafka = True  # at the load's message rate
    rto_phases = (
        phases.health_checks(lambda how: how.replace("checks", "checks of the cluster")),
        phases.decision,
        phases.action,
        phases.reconnect,
    )

    def inject(self, run: ScenarioRun) -> _Clusters:
        ctx, clock = run.ctx, run.clock
        group = ctx.settings("prod").kafka.consumer_group
        source, backup = ctx.lab.prod.kafka.bootstrap, ctx.lab.dr.kafka.bootstrap
        failed = threading.Event()
        producer = ctx.message_producer(lambda: backup if failed.is_set() else source, TOPIC, prefix="kafka")
        seen: Counter[str] = Counter()
        on_source: list[float] = []
        consumer = GroupConsumer(source, group, seen, on_source)
        mirror = ctx.settings("dr").kafka.mirror
        # MirrorMaker must notice the new group, then emit a checkpoint for its commits: at least these intervals, and
        # on a loaded machine longer, so wait for the checkpoint itself (bounded).
        checkpoint_wait = mirror.refresh_groups_interval_seconds + mirror.emit_checkpoints_interval_seconds + 3
        source_alias = cluster_alias(ctx.settings("prod").region)
        with clock.step(
            f"produce and consume on the source cluster (at least {checkpoint_wait} s, until checkpointed)"
        ):
            producer.start()
            consumer.start()
            time.sleep(checkpoint_wait)
            wait_for_checkpoint(backup, source_alias, group, timeout=60)
        failure_at = run.fault_injected()
        with clock.step("source cluster dies"):
            ctx.lab.prod.kafka.stop()
            failed.set()
            consumer.stop()
        return _Clusters(group, backup, producer, seen, failure_at)

    def recover(self, run: ScenarioRun, clusters: _Clusters) -> None:
        ctx, clock = run.ctx, run.clock
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
        run.checks.check(
            "consumer offsets translated", code == 0, exit_detail(code, ctx.json_dir / "consumer-offsets.json"), code, 0
        )
        backup_consumer = GroupConsumer(clusters.backup, clusters.group, clusters.seen, clusters.on_backup)
        acked_before = [a for a in clusters.producer.stats.acks if a.at <= clusters.failure_at]
        with clock.step("consume on the backup cluster until every acknowledged message is seen (30 s at most)"):
            backup_consumer.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(clusters.seen[a.key] == 0 for a in acked_before):
                time.sleep(0.2)
            time.sleep(2)
        clusters.producer.stop()
        backup_consumer.stop()

    def verify(self, run: ScenarioRun, clusters: _Clusters) -> None:
        stats, seen, failure_at, on_backup = (
            clusters.producer.stats,
            clusters.seen,
            clusters.failure_at,
            clusters.on_backup,
        )
        acked_before = [a for a in stats.acks if a.at <= failure_at]
        lost = [a for a in acked_before if seen[a.key] == 0]
        duplicates = sum(1 for a in stats.acks if seen[a.key] > 1)
        oldest_lost = min((x.at for x in lost), default=float("inf"))
        kept = [a.at for a in acked_before if seen[a.key] > 0 and a.at < oldest_lost]
        rpo = 0.0 if not lost else max(a.at for a in lost) - (max(kept) if kept else min(a.at for a in lost))
        after = [a for a in stats.acks if a.at > failure_at]
        m = run.measured
        m.rto_seconds = round(on_backup[0] - failure_at, 3) if on_backup else None
        m.rpo_seconds, m.rows_lost = round(rpo, 3), len(lost)
        m.messages_acknowledged, m.messages_lost, m.messages_reread = len(stats.acks), len(lost), duplicates
        m.details = KafkaFigures(
            messages_duplicated=duplicates,
            messages_after_failure_consumed=sum(1 for a in after if seen[a.key] > 0),
        )
        run.checks.check("consumers continued on the backup cluster", bool(on_backup), "a message was consumed there")
