"""kafka-cluster-failure: the source Kafka cluster dies; the application moves to the backup cluster.

The drill produces exception events to one of the topics the service consumes (the real collector in the lab's
primary region writes each one's row); producers switch to the backup cluster when the source dies. The recovery is
the product's command, `scripts.restore kafka-failover --stack <primary>`: the consumer group's offsets on the backup
cluster from MirrorMaker 2's checkpoints (not at latest), then the application's endpoints ConfigMap switched and its
Deployment restarted. An event the backup cluster acknowledged whose row never appears is lost by the product (none
may be); one the source acknowledged and that neither the collector consumed nor MirrorMaker copied before it died is
the mirror's asynchronous loss, measured as the RPO. One the collector found already written after the switch is a
duplicate (its metrics count them). RTO is from the failure to the first row of an event the backup cluster
acknowledged.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

from drtopo.checks.application import DUPLICATE_METRIC, http_get, metric, parse_prometheus
from drtopo.database.connect import connect
from drtopo.kafka.offsets import CheckpointError, read_checkpoints
from drtopo.mm2_properties import cluster_alias
from drtopo.outputs import StackOutputs
from scripts.drill.loadgen import MessageProducer
from scripts.drill.measured import Figures
from scripts.drill.scenarios import phases
from scripts.drill.scenarios.context import exit_detail
from scripts.drill.scenarios.scenario import Scenario, ScenarioRun

PRIMARY = "prod"
ROWS_WAIT_S = 60.0
SETTLE_S = 5.0  # no more of the source's events arriving for this long: the rest were never mirrored
DRILL_OPERATION = "KAFKA_DRILL"


def event_value(key: str) -> bytes:
    """The drill's exception event for `key`, as the collector consumes it."""
    return json.dumps({"transactionId": key, "exceptionReason": "kafka drill", "operation": DRILL_OPERATION}).encode()


def wait_for_checkpoint(bootstrap: str, source_alias: str, group: str, topic: str, timeout: float) -> None:
    """Until MirrorMaker 2 has checkpointed the group's commits on `topic` on `bootstrap` (TimeoutError after)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(tp.topic == topic for tp in read_checkpoints(bootstrap, source_alias, group)):
                return
        except CheckpointError:
            pass  # the checkpoints topic does not exist yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"no checkpoint of group {group!r} on {topic} at {bootstrap} within {timeout:.0f} s")
        time.sleep(0.5)


@dataclass
class KafkaFigures(Figures):
    messages_duplicated: int  # events the collector found already written (re-read after the switch)
    messages_after_failure_consumed: int  # produced to the backup cluster after the failure, and written
    messages_lost_in_mirror: int  # acknowledged by the source, neither consumed nor mirrored before it died (RPO)


@dataclass
class _Clusters:
    group: str
    topic: str
    backup: str  # the backup cluster's bootstrap: an acknowledgement from it came after the switch
    producer: MessageProducer
    failure_at: float
    scan_from: int  # the table's highest id before the drill produced anything
    rows: dict[str, float] = field(default_factory=dict)  # event key -> when its row was written (epoch s)
    duplicates: int | None = None


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
        settings = ctx.settings(PRIMARY)
        group, topic = settings.kafka.consumer_group, settings.service.event_topics[0]
        source, backup = ctx.lab.prod.kafka.bootstrap, ctx.lab.dr.kafka.bootstrap
        failed = threading.Event()
        producer = ctx.message_producer(
            lambda: backup if failed.is_set() else source, topic, prefix="kafka", value=event_value
        )
        mirror = ctx.settings("dr").kafka.mirror
        # MirrorMaker must notice the group, then emit a checkpoint for the collector's commits: at least these
        # intervals, and on a loaded machine longer, so wait for the checkpoint itself (bounded).
        checkpoint_wait = mirror.refresh_groups_interval_seconds + mirror.emit_checkpoints_interval_seconds + 3
        scan_from = RowScan.highest_id(ctx.outputs(PRIMARY))
        with clock.step(f"produce to {topic}; the collector consumes it (until checkpointed, {checkpoint_wait} s on)"):
            producer.start()
            wait_for_checkpoint(backup, cluster_alias(settings.region), group, topic, timeout=checkpoint_wait + 60)
        failure_at = run.fault_injected()
        with clock.step("source cluster dies"):
            ctx.lab.prod.kafka.stop()
            failed.set()
        return _Clusters(group, topic, backup, producer, failure_at, scan_from)

    def recover(self, run: ScenarioRun, clusters: _Clusters) -> None:
        ctx, clock = run.ctx, run.clock
        with clock.step(f"scripts.restore kafka-failover --stack {PRIMARY}"):
            code = ctx.run(
                "restore",
                [
                    "kafka-failover",
                    "--stack",
                    PRIMARY,
                    "--outputs",
                    str(ctx.outputs_path(PRIMARY)),
                    "--json",
                    str(ctx.json_dir / "kafka-failover.json"),
                ],
            )
        run.checks.check(
            "application moved to the backup cluster",
            code == 0,
            exit_detail(code, ctx.json_dir / "kafka-failover.json"),
            code,
            0,
        )
        stats = clusters.producer.stats
        scan = RowScan(ctx.outputs(PRIMARY), clusters.scan_from)
        with clock.step(f"until the collector writes an event from the backup cluster ({ROWS_WAIT_S:.0f} s at most)"):
            # At the load's rate the collector always trails the producer by a batch or two, so "every acknowledged
            # event has its row" holds only once the producer stops: wait for the first row from the backup cluster,
            # stop, then wait for the rest.
            deadline = time.monotonic() + ROWS_WAIT_S
            while time.monotonic() < deadline:
                clusters.rows.update(scan.found([a.key for a in stats.acks], clusters.rows))
                if any(a.target == clusters.backup and a.key in clusters.rows for a in stats.acks):
                    break
                time.sleep(0.5)
            clusters.producer.stop()
        with clock.step(f"until every acknowledged event has its row ({ROWS_WAIT_S:.0f} s at most)"):
            # What the source acknowledged and MirrorMaker never copied cannot arrive: once every event the backup
            # acknowledged has its row, the wait ends when the source's missing ones stop arriving (SETTLE_S).
            deadline = time.monotonic() + ROWS_WAIT_S
            missing, settled = len(stats.acks), time.monotonic()
            while time.monotonic() < deadline:
                clusters.rows.update(scan.found([a.key for a in stats.acks], clusters.rows))
                left = [a for a in stats.acks if a.key not in clusters.rows]
                if len(left) < missing:
                    missing, settled = len(left), time.monotonic()
                if not left or (
                    all(a.target != clusters.backup for a in left) and time.monotonic() - settled > SETTLE_S
                ):
                    break
                time.sleep(0.5)
            # The verdict on what is still missing is one exact lookup by transaction id.
            clusters.rows.update(
                rows_written(ctx.outputs(PRIMARY), [a.key for a in stats.acks if a.key not in clusters.rows])
            )
        status, body = http_get(ctx.lab.prod.service.url + ctx.settings(PRIMARY).service.metrics_path)
        if status == 200:
            found = metric(parse_prometheus(body.decode(errors="replace")), DUPLICATE_METRIC)
            clusters.duplicates = None if found is None else int(found)

    def verify(self, run: ScenarioRun, clusters: _Clusters) -> None:
        stats, rows, failure_at = clusters.producer.stats, clusters.rows, clusters.failure_at
        # Which cluster acknowledged an event decides what its loss means, not when: the source keeps acknowledging
        # while it shuts down, and what it took that MirrorMaker had not copied yet is the mirror's data loss (the
        # RPO, asynchronous by design). An event the backup cluster acknowledged was there for the collector after
        # the switch: losing one of those is the product's failure.
        by_source = [a for a in stats.acks if a.target != clusters.backup]
        by_backup = [a for a in stats.acks if a.target == clusters.backup]
        lost = [a for a in by_source if a.key not in rows]
        lost_after = [a for a in by_backup if a.key not in rows]
        oldest_lost = min((x.at for x in lost), default=float("inf"))
        kept = [a.at for a in by_source if a.key in rows and a.at < oldest_lost]
        rpo = 0.0 if not lost else max(a.at for a in lost) - (max(kept) if kept else min(a.at for a in lost))
        first_after = min((rows[a.key] for a in by_backup if a.key in rows), default=None)
        m = run.measured
        m.rto_seconds = round(first_after - failure_at, 3) if first_after is not None else None
        m.rpo_seconds, m.rows_lost = round(rpo, 3), len(lost)
        m.messages_acknowledged, m.messages_lost = len(stats.acks), len(lost) + len(lost_after)
        m.messages_reread = clusters.duplicates
        m.details = KafkaFigures(
            messages_duplicated=clusters.duplicates if clusters.duplicates is not None else -1,
            messages_after_failure_consumed=sum(1 for a in by_backup if a.key in rows),
            messages_lost_in_mirror=len(lost),
        )
        run.checks.check(
            "the collector continued on the backup cluster",
            first_after is not None,
            f"{len(by_backup)} events acknowledged by the backup cluster, the first row at "
            + (f"{first_after - failure_at:.2f} s after the failure" if first_after is not None else "none"),
        )
        run.checks.check(
            "every event the backup cluster acknowledged has its row",
            not lost_after,
            f"{len(lost_after)} of {len(by_backup)} have none",
            len(lost_after),
            0,
        )


class RowScan:
    """The drill's rows as the collector writes them, read incrementally: the rows past the highest id seen (an index
    range, not a lookup of every key still missing, which at 2,000 events a second grows into a query that starves
    the collector it waits for). A row whose id was taken before a later one's but committed after the scan passed
    it is found by the exact lookup of the keys still missing, done once they are few."""

    EXACT_BELOW = 5000

    def __init__(self, outputs: StackOutputs, after_id: int) -> None:
        self.outputs, self.after_id = outputs, after_id

    @staticmethod
    def highest_id(outputs: StackOutputs) -> int:
        with connect(outputs) as conn:
            return int(conn.execute("SELECT coalesce(max(id), 0) FROM interface_exceptions").fetchone()[0])

    def found(self, acked: list[str], rows: dict[str, float]) -> dict[str, float]:
        """Of the acknowledged keys `acked` not in `rows`, those whose row is now written, with when."""
        with connect(self.outputs) as conn:
            new = conn.execute(
                "SELECT id, transaction_id, extract(epoch FROM created_at)::float8 FROM interface_exceptions "
                "WHERE id > %s AND operation = %s ORDER BY id",
                (self.after_id, DRILL_OPERATION),
            ).fetchall()
        if new:
            self.after_id = max(self.after_id, int(new[-1][0]))
        out = {key: float(at) for _id, key, at in new}
        missing = [k for k in acked if k not in rows and k not in out]
        if missing and len(missing) < self.EXACT_BELOW:
            out.update(rows_written(self.outputs, missing))
        return out


def rows_written(outputs: StackOutputs, keys: list[str]) -> dict[str, float]:
    """Of `keys`, those whose row is in the database, with when it was written (epoch seconds)."""
    if not keys:
        return {}
    with connect(outputs) as conn:
        found = conn.execute(
            "SELECT transaction_id, extract(epoch FROM created_at)::float8 FROM interface_exceptions "
            "WHERE transaction_id = ANY(%s)",
            (keys,),
        ).fetchall()
    return {key: float(at) for key, at in found}
