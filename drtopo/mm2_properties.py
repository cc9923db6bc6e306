"""The MirrorMaker 2 properties a stack runs, rendered by one pure function from settings.

The Kubernetes ConfigMap holds exactly this text and the lab runs exactly this text (with its own bootstrap
addresses), so what is tested is what is deployed. A stack mirrors from its peer region into its own cluster
while it is the standby; as primary the reverse flow is declared but disabled, so a role switch only flips flags.
"""

from __future__ import annotations

from drtopo.settings import Settings


def cluster_alias(region: str) -> str:
    """MirrorMaker cluster aliases are the regions: they must not contain the replication separator '.'."""
    return region


def mirror_flow(settings: Settings) -> tuple[str, str]:
    """(source alias, target alias) of the flow this stack runs: peer -> this region."""
    return cluster_alias(settings.peer_region), cluster_alias(settings.region)


def render_mm2_properties(
    settings: Settings,
    *,
    bootstrap_servers: str | None = None,
    peer_bootstrap_servers: str | None = None,
) -> str:
    """The `mm2.properties` text for this stack's MirrorMaker 2 (dedicated mode)."""
    kafka = settings.kafka
    mirror = kafka.mirror
    source, target = mirror_flow(settings)
    flow, reverse = f"{source}->{target}", f"{target}->{source}"
    rf = mirror.replication_factor
    enabled = "false" if settings.is_primary else "true"
    connector = {
        "enabled": enabled,
        "topics": "|".join(kafka.mirrored_topics),
        "groups": kafka.consumer_group,
        "replication.policy.class": mirror.replication_policy,
        "emit.checkpoints.enabled": "true",
        "emit.checkpoints.interval.seconds": mirror.emit_checkpoints_interval_seconds,
        "emit.heartbeats.enabled": "true",
        "emit.heartbeats.interval.seconds": mirror.emit_heartbeats_interval_seconds,
        "sync.group.offsets.enabled": "true",
        "sync.group.offsets.interval.seconds": mirror.sync_group_offsets_interval_seconds,
        "refresh.topics.interval.seconds": mirror.refresh_topics_interval_seconds,
        "refresh.groups.interval.seconds": mirror.refresh_groups_interval_seconds,
        "offset-syncs.topic.location": "target",
        "offset.lag.max": mirror.offset_lag_max,
        "sync.topic.configs.enabled": "true",
        "sync.topic.acls.enabled": "false",
    }
    lines = [
        f"# MirrorMaker 2 for stack {settings.stack} ({settings.role.value}) - rendered by drtopo, do not edit.",
        f"# Flow {flow} is {'disabled: this region is the primary' if settings.is_primary else 'enabled'}.",
        f"clusters = {source}, {target}",
        f"{source}.bootstrap.servers = {peer_bootstrap_servers or kafka.peer_bootstrap_servers}",
        f"{target}.bootstrap.servers = {bootstrap_servers or kafka.bootstrap_servers}",
        f"replication.policy.class = {mirror.replication_policy}",
        f"tasks.max = {mirror.tasks_max}",
        f"replication.factor = {rf}",
        f"checkpoints.topic.replication.factor = {rf}",
        f"heartbeats.topic.replication.factor = {rf}",
        f"offset-syncs.topic.replication.factor = {rf}",
        f"offset.storage.replication.factor = {rf}",
        f"config.storage.replication.factor = {rf}",
        f"status.storage.replication.factor = {rf}",
        # Kafka's own plugins all have ServiceLoader manifests: skip the reflective classpath scan, which costs
        # 6-14 s of start-up each time (top level, then each herder's worker, whose config is the target cluster's).
        "plugin.discovery = service_load",
        f"{source}.plugin.discovery = service_load",
        f"{target}.plugin.discovery = service_load",
        "",
    ]
    lines += [f"{flow}.{key} = {value}" for key, value in connector.items()]
    # Dedicated MirrorMaker still runs a heartbeat connector for a disabled flow unless told not to: without this
    # line the standby would write heartbeats into the primary's cluster.
    lines += [
        "",
        f"{reverse}.enabled = false",
        f"{reverse}.emit.heartbeats.enabled = false",
        f"{reverse}.replication.policy.class = {mirror.replication_policy}",
        "",
    ]
    return "\n".join(lines)
