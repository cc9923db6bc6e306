"""Which Kafka cluster plays which part for a stack, and recreating the configured topics that a cluster lacks.

The "source" cluster is the primary region's (producers write there); the "backup" cluster is the standby's, where
MirrorMaker 2 mirrors to and writes its checkpoints. Topic recreation is idempotent: existing topics are reported,
never altered; missing ones are created with the partitions, replication factor and retention from settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from drtopo.mm2_properties import cluster_alias
from drtopo.outputs import StackOutputs
from drtopo.report import Unsafe
from drtopo.settings import Settings, Topic

TIMEOUT = 10.0
CLUSTERS = ("backup", "source")


@dataclass(frozen=True)
class Cluster:
    alias: str  # MirrorMaker 2 cluster alias (the region)
    bootstrap: str


def clusters(settings: Settings, outputs: StackOutputs) -> dict[str, Cluster]:
    """{"source": primary's cluster, "backup": standby's cluster}, seen from this stack (pure)."""
    own = Cluster(cluster_alias(settings.region), outputs.kafka_bootstrap)
    peer = Cluster(cluster_alias(settings.peer_region), outputs.peer_kafka_bootstrap)
    return {"source": own, "backup": peer} if settings.is_primary else {"source": peer, "backup": own}


@dataclass(frozen=True)
class TopicResult:
    name: str
    action: str  # "existed" | "created" | "would create" | "failed"
    partitions: int | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.action != "failed"


def existing_topics(admin: AdminClient, bootstrap: str) -> dict[str, int]:
    """Topic name -> partition count; an unreachable cluster is refused (exit 3, target not ready)."""
    try:
        metadata = admin.list_topics(timeout=TIMEOUT)
    except KafkaException as exc:
        raise Unsafe(f"Kafka cluster {bootstrap} is not reachable ({exc.args[0].str()}); target not ready") from None
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def recreate_topics(bootstrap: str, topics: tuple[Topic, ...], dry_run: bool = False) -> list[TopicResult]:
    # librdkafka logs each failed connection attempt to stderr; the refusal below says it in one line instead.
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(TIMEOUT * 1000), "log_level": 0})
    present = existing_topics(admin, bootstrap)
    results = [
        TopicResult(
            t.name,
            "existed",
            present[t.name],
            "" if present[t.name] == t.partitions else f"has {present[t.name]} partitions, configured {t.partitions}",
        )
        for t in topics
        if t.name in present
    ]
    missing = [t for t in topics if t.name not in present]
    if dry_run or not missing:
        return results + [TopicResult(t.name, "would create", t.partitions) for t in missing]
    futures = admin.create_topics(
        [
            NewTopic(t.name, t.partitions, t.replication_factor, config={"retention.ms": str(t.retention_ms)})
            for t in missing
        ],
        request_timeout=TIMEOUT,
    )
    for t in missing:
        try:
            futures[t.name].result()
            results.append(TopicResult(t.name, "created", t.partitions, f"rf {t.replication_factor}"))
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                results.append(TopicResult(t.name, "existed", None, "created concurrently"))
            else:
                results.append(TopicResult(t.name, "failed", None, error.str()))
    return results
