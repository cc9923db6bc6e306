"""drtopo's own alerts as one PrometheusRule (pure), for clusters that serve the kind (the Prometheus Operator's
`monitoring.coreos.com/v1`; `drtopo:kubernetes.prometheusRules: true` says the cluster does: a preview cannot ask).

Each alert reads a metric of a well-known exporter and fires before an objective is missed:
- replica lag near the region-failure RPO: postgres_exporter's `pg_replication_lag` (seconds, on the standby);
- the newest dump older than a day: kube-state-metrics' `kube_cronjob_status_last_successful_time` of the dump job;
- WAL archive age near the database-corruption RPO: postgres_exporter's `pg_stat_archiver_last_archive_age`;
- a WAL archive backlog: postgres_exporter's `pg_stat_archiver_lag_bytes` (the WAL written since the start of the
  last archived segment; its `stat_archiver` lag collector, on by default since 2025) above `BACKLOG_SEGMENTS`
  segments of the default 16 MiB for five minutes: the archive command is failing or not keeping up, and a restore
  from the bucket would wait for (or lose) that much;
- MirrorMaker 2 lag near the Kafka RPO: MirrorMaker's `replication-latency-ms` through the JMX exporter
  (`kafka_connect_mirror_source_connector_replication_latency_ms`).
"""

from __future__ import annotations

from typing import Any

from drtopo.settings import Settings

# Fire at this share of the objective, so someone acts before it is missed.
NEAR = 0.8
DAY_SECONDS = 86400
DUMP_JOB = "pg-dump"
# A parallel archive command (`scripts.wal push --parallel`) stays under 2 segments behind; 8 held for five minutes
# is an archiver that has stopped keeping up. PostgreSQL's default segment size.
BACKLOG_SEGMENTS = 8
SEGMENT_BYTES = 16 * 1024 * 1024


def alert_rules(settings: Settings) -> list[dict[str, Any]]:
    """The PrometheusRule's one group of alerts, thresholds from the objectives (pure)."""
    o, namespace = settings.objectives, settings.kubernetes.namespace
    lag = NEAR * o.region_failure.rpo_seconds
    archive = NEAR * o.database_corruption.rpo_seconds
    kafka_ms = NEAR * o.kafka_cluster_failure.rpo_seconds * 1000

    def alert(name: str, expr: str, summary: str) -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": "5m",
            "labels": {"severity": "critical", "drtopo_stack": settings.stack},
            "annotations": {"summary": summary},
        }

    return [
        alert(
            "DrtopoReplicaLagNearRpo",
            f"max(pg_replication_lag) > {lag:g}",
            f"standby replica lag above {lag:g} s ({NEAR:.0%} of the region-failure RPO)",
        ),
        alert(
            "DrtopoNewestDumpOlderThanADay",
            f'time() - kube_cronjob_status_last_successful_time{{namespace="{namespace}",cronjob="{DUMP_JOB}"}}'
            f" > {DAY_SECONDS}",
            "no successful database dump in the last day",
        ),
        alert(
            "DrtopoWalArchiveStale",
            f"max(pg_stat_archiver_last_archive_age) > {archive:g}",
            f"newest archived WAL older than {archive:g} s ({NEAR:.0%} of the database-corruption RPO)",
        ),
        alert(
            "DrtopoWalArchiveBacklog",
            f"max(pg_stat_archiver_lag_bytes) > {BACKLOG_SEGMENTS * SEGMENT_BYTES}",
            f"WAL archive more than {BACKLOG_SEGMENTS * SEGMENT_BYTES // 2**20} MiB ({BACKLOG_SEGMENTS} segments of "
            "the default size) behind the primary: the archive command is failing or not keeping up",
        ),
        alert(
            "DrtopoMirrorMakerLagNearRpo",
            f"max(kafka_connect_mirror_source_connector_replication_latency_ms) > {kafka_ms:g}",
            f"MirrorMaker 2 replication latency above {kafka_ms:g} ms ({NEAR:.0%} of the Kafka RPO)",
        ),
    ]
