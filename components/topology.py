"""The whole stack for this stack's role: storage, database, DNS failover, the Kafka mirror, the backup jobs, the
application's DR state and the incident topic, and the outputs the scripts read (`StackOutputs`).

`build_topology(settings)` is the program; `__main__.py` only loads the settings and exports what this returns.
The unit tests and the policy tests evaluate this same function under Pulumi mocks.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_kubernetes import Provider

from components.alerts import AlertTopic, AlertTopicArgs
from components.application import Application, ApplicationArgs
from components.backup_jobs import BackupJobs, BackupJobsArgs
from components.database import Database, DatabaseArgs
from components.dns import DnsFailover, DnsFailoverArgs
from components.fencing import declare_fencing
from components.kafka_mirror import KafkaMirror, KafkaMirrorArgs
from components.prometheus_rules import DrtopoAlerts, DrtopoAlertsArgs
from components.readiness_check import ReadinessCheck, ReadinessCheckArgs
from components.registry import ImageRegistry, ImageRegistryArgs
from components.storage import BackupStorage, BackupStorageArgs
from components.volume_backup import VolumeBackups, VolumeBackupsArgs
from drtopo import naming
from drtopo.outputs import bucket_outputs, outputs_document
from drtopo.settings import Settings


def build_topology(settings: Settings) -> dict[str, Any]:
    """Declare the stack and return its exports, keyed as `drtopo.outputs.StackOutputs` (camelCase)."""
    # This stack's own cluster, from its own settings: every Kubernetes object inherits this provider from its
    # component, so `pulumi up -s dr` run with prod's kubeconfig current still writes only to dr's cluster.
    cluster = pulumi.ResourceOptions(providers=[Provider("kubernetes", context=settings.kubernetes.context)])
    storage = BackupStorage("backups", BackupStorageArgs(settings=settings))
    database = Database("database", DatabaseArgs(settings=settings))
    dns = DnsFailover("dns", DnsFailoverArgs(settings=settings))
    # drtopo's images in this region's ECR, replicated from the primary's: each region's workloads pull their own.
    ImageRegistry("images", ImageRegistryArgs(settings=settings))
    # The namespace's persistent volumes, snapshotted with the tiers and copied to the peer region.
    VolumeBackups("volumes", VolumeBackupsArgs(settings=settings))
    KafkaMirror("kafka-mirror", KafkaMirrorArgs(settings=settings), cluster)
    # Where the tools tell people an incident started, moved on and ended: in this region, so the side that is
    # alive always has one (named, so the lab and a command without outputs find it too).
    incidents = AlertTopic(
        "incidents",
        AlertTopicArgs(
            description=f"drtopo incidents of {settings.stack} in {settings.region}",
            alias=f"drtopo-{settings.region}-incidents",
            subscriptions=settings.notifications.incidents,
            name=naming.incident_topic_name(settings.region),
            service_principals=(),
        ),
    )
    instance = database.instance
    # The application's replicas for this role and its endpoints in this region (its chart owns the Deployment).
    Application(
        "application", ApplicationArgs(settings=settings, db_address=instance.address, db_port=instance.port), cluster
    )
    outputs = outputs_document(
        settings,
        {
            "dbInstanceId": instance.identifier,
            "dbArn": instance.arn,
            "dbAddress": instance.address,
            "dbPort": instance.port,
            "dbPasswordSecretArn": database.password_secret_arn,
            "dbKmsKeyArn": database.key_arn,
            "kmsKeyArn": storage.key_arn,
            **bucket_outputs(storage.bucket_names),
            "hostedZoneId": dns.zone_id,
            "healthCheckId": dns.health_check_id,
            "incidentTopicArn": incidents.topic_arn,
        },
    )
    # The jobs read the very outputs this stack exports (none secret: the password stays in its secret).
    BackupJobs("backup-jobs", BackupJobsArgs(settings=settings, outputs=outputs), cluster)
    # The primary lease (drtopo:fencing.mode lease): the guard in this cluster, the witness where this stack owns it.
    declare_fencing(settings, outputs, cluster)
    # Are we ready right now? Asked every hour from the region that must take over (the primary's is suspended).
    ReadinessCheck("readiness-check", ReadinessCheckArgs(settings=settings, outputs=outputs), cluster)
    if settings.kubernetes.prometheus_rules:
        DrtopoAlerts("drtopo-alerts", DrtopoAlertsArgs(settings=settings), cluster)
    return outputs
