"""Hand-built resources for the rule tests: a compliant stack, and helpers to break one property of it.

The baseline is what a correct drtopo stack registers, written out by hand in the provider's camelCase shape, so a
rule test does not depend on the program; `broken(...)` returns a copy with one input changed or removed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from drtopo import naming
from drtopo.images import REPOSITORY_PREFIX, workload_images
from drtopo.mm2_properties import render_mm2_properties
from drtopo.settings import Settings
from drtopo.volumes import PVC_NAMESPACE_TAG, plan_rules
from policies import resource_types as types
from policies.model import Resource, path_parts

STACK_URN = "urn:pulumi:{stack}::drtopo::"
DROP = object()


def res(settings: Settings, type_token: str, name: str, inputs: dict[str, Any], protect: bool = False) -> Resource:
    urn = f"{STACK_URN.format(stack=settings.stack)}{type_token}::{name}"
    provider = cluster_provider_urn(settings) if type_token.startswith("kubernetes:") else ""
    return Resource(type_token, name, inputs, urn=urn, protect=protect, id=f"{name}-id", provider=provider)


def cluster_provider_urn(settings: Settings) -> str:
    return f"{STACK_URN.format(stack=settings.stack)}{types.K8S_PROVIDER}::kubernetes"


def bucket_policy(bucket: str) -> str:
    arns = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "TlsOnly",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": arns,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                {
                    "Sid": "KmsUploadsOnly",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:PutObject",
                    "Resource": arns[1],
                    "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}},
                },
            ],
        }
    )


def lifecycle_rules(settings: Settings, purpose: str) -> list[dict[str, Any]]:
    retention = settings.retention
    if purpose in ("dumps", "config"):
        rules = []
        for name, tier in retention.tiers().items():
            rule: dict[str, Any] = {
                "id": f"{name}-tier",
                "status": "Enabled",
                "filter": {"prefix": f"{name}/"},
                "expiration": {"days": float(tier.days)},
            }
            if tier.cold_after_days:
                rule["transitions"] = [{"days": float(tier.cold_after_days), "storageClass": tier.cold_storage_class}]
            rules.append(rule)
        return rules
    days = retention.operational_days if purpose == "wal" else retention.audit_years * 365
    return [{"id": purpose, "status": "Enabled", "filter": {"prefix": ""}, "expiration": {"days": float(days)}}]


def storage(settings: Settings) -> list[Resource]:
    found: list[Resource] = []
    for purpose in naming.BUCKET_PURPOSES:
        physical = naming.bucket_name(settings, purpose)
        name = f"backups-{purpose}"
        bucket_inputs: dict[str, Any] = {"bucket": physical}
        if purpose == "audit":
            bucket_inputs["objectLockEnabled"] = True
        found.append(res(settings, types.BUCKET, name, bucket_inputs, protect=True))
        ref = f"{name}-id"
        found += [
            res(
                settings,
                types.BUCKET_VERSIONING,
                name,
                {"bucket": ref, "versioningConfiguration": {"status": "Enabled"}},
            ),
            res(
                settings,
                types.BUCKET_SSE,
                name,
                {
                    "bucket": ref,
                    "rules": [
                        {
                            "applyServerSideEncryptionByDefault": {
                                "sseAlgorithm": "aws:kms",
                                "kmsMasterKeyId": "arn:aws:kms:us-east-1:123456789012:key/k",
                            },
                            "bucketKeyEnabled": True,
                        }
                    ],
                },
            ),
            res(
                settings,
                types.BUCKET_PUBLIC_ACCESS_BLOCK,
                name,
                {
                    "bucket": ref,
                    "blockPublicAcls": True,
                    "blockPublicPolicy": True,
                    "ignorePublicAcls": True,
                    "restrictPublicBuckets": True,
                },
            ),
            res(settings, types.BUCKET_POLICY, name, {"bucket": ref, "policy": bucket_policy(physical)}),
            res(settings, types.BUCKET_LIFECYCLE, name, {"bucket": ref, "rules": lifecycle_rules(settings, purpose)}),
            res(
                settings,
                types.BUCKET_REPLICATION,
                name,
                {
                    "bucket": physical,
                    "role": "arn:aws:iam::123456789012:role/replication",
                    "rules": [
                        {
                            "id": "to-peer",
                            "status": "Enabled",
                            "filter": {"prefix": ""},
                            "deleteMarkerReplication": {"status": "Enabled"},
                            "destination": {
                                "bucket": f"arn:aws:s3:::{naming.bucket_name(settings, purpose)}-peer",
                                "replicationTime": {"status": "Enabled", "time": {"minutes": 15.0}},
                                "metrics": {"status": "Enabled", "eventThreshold": {"minutes": 15.0}},
                            },
                        }
                    ],
                },
            ),
        ]
        if purpose == "audit":
            found.append(
                res(
                    settings,
                    types.BUCKET_OBJECT_LOCK,
                    name,
                    {"bucket": ref, "rule": {"defaultRetention": {"mode": "COMPLIANCE", "years": 7.0}}},
                )
            )
    return found


ACCOUNT = "123456789012"
# The topics the program declares: logical name -> physical name (None: named by Pulumi) and whose subscribers.
TOPICS = {"database-alerts": None, "dns-alerts": None, "incidents": naming.incident_topic_name}


def topic_arn(settings: Settings, topic: str) -> str:
    physical = TOPICS[topic]
    return f"arn:aws:sns:{settings.region}:{ACCOUNT}:{physical(settings.region) if physical else topic}"


def routed(settings: Settings, topic: str) -> dict[str, Any]:
    """An alarm's actions: ALARM and OK to `topic`."""
    return {"alarmActions": [topic_arn(settings, topic)], "okActions": [topic_arn(settings, topic)]}


def notifications(settings: Settings) -> list[Resource]:
    """The alarm topics and the incident topic, each encrypted and with the settings' subscribers."""
    found = []
    for topic, physical in TOPICS.items():
        inputs: dict[str, Any] = {"kmsMasterKeyId": f"arn:aws:kms:{settings.region}:{ACCOUNT}:key/{topic}"}
        if physical:
            inputs["name"] = physical(settings.region)
        found.append(res(settings, types.SNS_TOPIC, topic, inputs))
        subscribers = settings.notifications.incidents if topic == "incidents" else settings.notifications.alerts
        found += [
            res(
                settings,
                types.SNS_TOPIC_SUBSCRIPTION,
                f"{topic}-sub-{index}",
                {"topic": topic_arn(settings, topic), "protocol": sub.protocol.value, "endpoint": sub.endpoint},
            )
            for index, sub in enumerate(subscribers)
        ]
    return found


def database(settings: Settings) -> list[Resource]:
    instance: dict[str, Any] = {
        "identifier": naming.db_identifier(settings),
        "engine": "postgres",
        "storageEncrypted": True,
        "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/db",
        "multiAz": True,
        "deletionProtection": True,
        "backupRetentionPeriod": 14.0,
        "publiclyAccessible": False,
        "parameterGroupName": "drtopo-pg15",
    }
    if not settings.is_primary:
        instance["replicateSourceDb"] = "arn:aws:rds:us-east-1:123456789012:db:exception-collector-us-east-1"
    return [
        res(settings, types.KMS_KEY, "database-key", {"enableKeyRotation": True}, protect=True),
        res(settings, types.RDS_INSTANCE, "database", instance, protect=True),
        res(
            settings,
            types.SECRET,
            "database-master-secret",
            {
                "name": naming.db_secret_name(settings.region),
                "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/db",
                "replicas": [
                    {"region": settings.peer_region, "kmsKeyId": f"alias/drtopo-{settings.peer_region}-database"}
                ],
            },
            protect=True,
        ),
        res(
            settings,
            types.RDS_PARAMETER_GROUP,
            "database-params",
            {
                "family": "postgres15",
                "parameters": [
                    {"name": "rds.force_ssl", "value": "1"},
                    {"name": "archive_timeout", "value": "60"},
                ],
            },
        ),
        res(
            settings,
            types.METRIC_ALARM,
            "database-replica-lag",
            {
                "namespace": "AWS/RDS",
                "metricName": "ReplicaLag",
                "threshold": 300.0,
                "period": 60.0,
                "evaluationPeriods": 3.0,
                "comparisonOperator": "GreaterThanOrEqualToThreshold",
                **routed(settings, "database-alerts"),
            },
        ),
    ]


def dns(settings: Settings) -> list[Resource]:
    return [
        res(
            settings,
            types.ROUTE53_HEALTH_CHECK,
            "dns-health",
            {
                "type": "HTTPS",
                "fqdn": settings.dns.endpoint,
                "resourcePath": settings.dns.health_check_path,
                "requestInterval": 10.0,
                "failureThreshold": 3.0,
            },
        ),
        res(
            settings,
            types.METRIC_ALARM,
            "dns-takeover",
            {
                "name": naming.takeover_alarm_name(settings.region),
                "namespace": naming.TAKEOVER_NAMESPACE,
                "metricName": naming.TAKEOVER_METRIC,
                "dimensions": {"Region": settings.region},
                "statistic": "Maximum",
                "period": 60.0,
                "evaluationPeriods": 1.0,
                "threshold": 1.0,
                "comparisonOperator": "GreaterThanOrEqualToThreshold",
                "treatMissingData": "ignore",
                **routed(settings, "dns-alerts"),
            },
        ),
        res(
            settings,
            types.ROUTE53_HEALTH_CHECK,
            "dns-peer-takeover",
            {
                "type": "CLOUDWATCH_METRIC",
                "cloudwatchAlarmName": naming.takeover_alarm_name(settings.peer_region),
                "cloudwatchAlarmRegion": settings.peer_region,
                "insufficientDataHealthStatus": "Healthy",
            },
        ),
        res(
            settings,
            types.ROUTE53_HEALTH_CHECK,
            "dns-record-health",
            {
                "type": "CALCULATED",
                "childHealthchecks": ["dns-health-id", "dns-peer-takeover-id"],
                "childHealthThreshold": 2.0,
            },
        ),
        res(
            settings,
            types.ROUTE53_RECORD,
            "dns-record",
            {
                "name": settings.dns.record_name,
                "type": "CNAME",
                "ttl": 30.0,
                "records": [settings.dns.endpoint],
                "setIdentifier": naming.set_identifier(settings),
                "healthCheckId": "dns-record-health-id",
                "failoverRoutingPolicies": [{"type": settings.role.failover}],
            },
        ),
    ]


def container(name: str, command: list[str], image: str, env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": command,
        "env": env or [],
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def cronjob(
    settings: Settings, name: str, schedule: str, command: list[str], service_account: str = ""
) -> dict[str, Any]:
    password = {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "exception-collector-db", "key": "pw"}}}
    return {
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600.0,
            "successfulJobsHistoryLimit": 3.0,
            "failedJobsHistoryLimit": 3.0,
            "jobTemplate": {
                "spec": {
                    "activeDeadlineSeconds": 7200.0,
                    "template": {
                        "spec": {
                            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001.0},
                            "serviceAccountName": service_account or name,
                            "containers": [container(name, command, settings.kubernetes.backup_image, [password])],
                        }
                    },
                }
            },
        },
    }


def kubernetes(settings: Settings) -> list[Resource]:
    mm2 = render_mm2_properties(settings)
    return [
        res(settings, types.K8S_PROVIDER, "kubernetes", {"context": settings.kubernetes.context}),
        res(settings, types.K8S_CONFIGMAP, "kafka-mirror-config", {"data": {"mm2.properties": mm2}}),
        res(
            settings,
            types.K8S_DEPLOYMENT,
            "kafka-mirror",
            {
                "spec": {
                    "template": {
                        "spec": {
                            "securityContext": {"runAsNonRoot": True},
                            "containers": [
                                container(
                                    "mirror-maker", ["connect-mirror-maker.sh"], settings.kubernetes.mirror_maker_image
                                )
                            ],
                        }
                    }
                }
            },
        ),
        res(
            settings,
            types.K8S_CRONJOB,
            "backup-jobs-dump",
            cronjob(
                settings,
                "db-dump",
                settings.kubernetes.dump_schedule,
                ["python", "-m", "scripts.backup", "run"],
                "pg-dump",
            ),
        ),
        res(
            settings,
            types.K8S_CRONJOB,
            "backup-jobs-restore-test",
            cronjob(
                settings,
                "restore-test",
                settings.kubernetes.restore_test_schedule,
                ["python", "-m", "scripts.backup", "restore-test", "--random"],
                "pg-dump",
            ),
        ),
        res(
            settings,
            types.K8S_CRONJOB,
            "backup-jobs-export",
            cronjob(
                settings,
                "k8s-export",
                settings.kubernetes.resource_export_schedule,
                ["python", "-m", "scripts.export"],
                "config-export",
            ),
        ),
    ]


def application(settings: Settings) -> list[Resource]:
    """The application's replica patch for the role and its endpoints ConfigMap."""
    app = settings.application
    replicas = app.primary_replicas if settings.is_primary else app.standby_replicas
    metadata = {"name": app.deployment, "namespace": settings.kubernetes.namespace}
    return [
        res(
            settings,
            types.K8S_DEPLOYMENT_PATCH,
            "application-replicas",
            {"metadata": metadata, "spec": {"replicas": replicas}},
        ),
        res(
            settings,
            types.K8S_CONFIGMAP,
            "application-endpoints",
            {
                "data": {
                    "DATABASE_WRITER_HOST": "db.internal",
                    "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
                }
            },
        ),
    ]


def workload_identity(settings: Settings) -> list[Resource]:
    """With an OIDC issuer: one IRSA role per backup job, least privilege, its ServiceAccount annotated."""
    if settings.kubernetes.oidc_issuer is None:
        return []
    from components.identity import dump_policy, export_policy, secret_arn, trust_policy

    account, region, namespace = "123456789012", settings.region, settings.kubernetes.namespace
    source = settings.region if settings.is_primary else settings.peer_region
    key = f"arn:aws:kms:{region}:{account}:key/backups"
    policies = {
        "pg-dump": dump_policy(
            region,
            naming.bucket_name(settings, "dumps"),
            key,
            secret_arn(region, account, naming.db_secret_name(source)),
            f"arn:aws:kms:{region}:{account}:key/db",
        ),
        "config-export": export_policy(region, naming.bucket_name(settings, "config"), f"config/{settings.stack}", key),
    }
    found = []
    for job, policy in policies.items():
        role = f"backup-jobs-{job}-role"
        trust = trust_policy(account, settings.kubernetes.oidc_issuer, namespace, job)
        found += [
            res(settings, types.IAM_ROLE, role, {"name": f"drtopo-{region}-{job}", "assumeRolePolicy": trust}),
            res(settings, types.IAM_ROLE_POLICY, role, {"role": f"{role}-id", "policy": policy}),
            res(
                settings,
                types.K8S_SERVICE_ACCOUNT,
                f"backup-jobs-{job}-sa",
                {
                    "metadata": {
                        "name": job,
                        "namespace": namespace,
                        "annotations": {
                            "eks.amazonaws.com/role-arn": f"arn:aws:iam::{account}:role/drtopo-{region}-{job}"
                        },
                    }
                },
            ),
        ]
    return found


def readiness(settings: Settings) -> list[Resource]:
    """On a standby: the hourly readiness CronJob, its alarm (to the DNS alert topic here) and, with an OIDC issuer,
    its IRSA role with the least-privilege policy and its annotated ServiceAccount."""
    if settings.is_primary:
        return []
    from components.identity import trust_policy
    from components.readiness_check import readiness_policy
    from drtopo.readiness import schedule

    job = schedule.JOB
    spec = schedule.alarm_spec(settings.stack)
    alarm = {
        "name": spec["AlarmName"],
        "namespace": spec["Namespace"],
        "metricName": spec["MetricName"],
        "dimensions": {d["Name"]: d["Value"] for d in spec["Dimensions"]},
        "statistic": spec["Statistic"],
        "period": float(spec["Period"]),
        "evaluationPeriods": 1.0,
        "threshold": spec["Threshold"],
        "comparisonOperator": spec["ComparisonOperator"],
        "treatMissingData": spec["TreatMissingData"],
        **routed(settings, "dns-alerts"),
    }
    found = [
        res(
            settings,
            types.K8S_CRONJOB,
            "readiness-check",
            cronjob(settings, job, schedule.SCHEDULE, schedule.command(settings.stack)),
        ),
        res(settings, types.METRIC_ALARM, "readiness-check-alarm", alarm),
    ]
    if settings.kubernetes.oidc_issuer is None:
        return found
    region, namespace, role = settings.region, settings.kubernetes.namespace, "readiness-check-role"
    key = f"arn:aws:kms:{region}:{ACCOUNT}:key/backups"
    policy = readiness_policy(settings, ACCOUNT, naming.bucket_name(settings, "config"), key)
    trust = trust_policy(ACCOUNT, settings.kubernetes.oidc_issuer, namespace, job)
    annotations = {"eks.amazonaws.com/role-arn": f"arn:aws:iam::{ACCOUNT}:role/drtopo-{region}-{job}"}
    return [
        *found,
        res(settings, types.IAM_ROLE, role, {"name": f"drtopo-{region}-{job}", "assumeRolePolicy": trust}),
        res(settings, types.IAM_ROLE_POLICY, role, {"role": f"{role}-id", "policy": policy}),
        res(
            settings,
            types.K8S_SERVICE_ACCOUNT,
            "readiness-check-sa",
            {"metadata": {"name": job, "namespace": namespace, "annotations": annotations}},
        ),
    ]


def images(settings: Settings) -> list[Resource]:
    """The ECR repositories of drtopo's images in the stack's region; on the primary, replication to the peer's."""
    found = []
    for purpose, image in workload_images(settings).items():
        repository = image.split("/", 1)[1].split(":")[0]
        scanning = {"scanOnPush": True}
        inputs = {"name": repository, "imageTagMutability": "IMMUTABLE", "imageScanningConfiguration": scanning}
        found.append(res(settings, types.ECR_REPOSITORY, f"images-{purpose}", inputs, protect=True))
    if settings.is_primary:
        rule = {
            "destinations": [{"region": settings.peer_region, "registryId": "123456789012"}],
            "repositoryFilters": [{"filter": REPOSITORY_PREFIX, "filterType": "PREFIX_MATCH"}],
        }
        config = {"replicationConfiguration": {"rules": [rule]}}
        found.append(res(settings, types.ECR_REPLICATION, "images-replication", config))
    return found


def volumes(settings: Settings) -> list[Resource]:
    """The volume backups: an encrypted vault, a plan copying every tier to the peer's vault, the selection."""
    account = "123456789012"
    rules = [{**camel_rule(r)} for r in plan_rules(settings, account)]
    tags = [{"type": "STRINGEQUALS", "key": PVC_NAMESPACE_TAG, "value": settings.kubernetes.namespace}]
    return [
        res(settings, types.BACKUP_VAULT, "volumes-vault", {"kmsKeyArn": "arn:aws:kms:key"}, protect=True),
        res(settings, types.BACKUP_PLAN, "volumes-plan", {"rules": rules}),
        res(settings, types.BACKUP_SELECTION, "volumes-selection", {"selectionTags": tags}),
    ]


def camel_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A plan rule as the provider receives it (camelCase keys, numbers as floats)."""

    def camel(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(p.title() for p in rest)

    def convert(node: Any) -> Any:
        if isinstance(node, dict):
            return {camel(k): convert(v) for k, v in node.items()}
        if isinstance(node, list):
            return [convert(v) for v in node]
        return float(node) if isinstance(node, int) and not isinstance(node, bool) else node

    converted: dict[str, Any] = convert(rule)
    return converted


def baseline(settings: Settings) -> list[Resource]:
    """A stack that complies with every rule for `settings`."""
    found = storage(settings) + database(settings) + dns(settings) + notifications(settings) + kubernetes(settings)
    found += images(settings)
    found += volumes(settings)
    found += application(settings)
    found += workload_identity(settings)
    found += readiness(settings)
    if settings.kubernetes.oidc_issuer is not None:
        # The jobs read the master secret with their role: no Kubernetes Secret in any CronJob.
        found = [_without_secret_refs(r) if r.type == types.K8S_CRONJOB else r for r in found]
    return found


def _without_secret_refs(job: Resource) -> Resource:
    inputs = copy.deepcopy(dict(job.inputs))
    for container in inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
        container["env"] = [e for e in container.get("env", []) if "valueFrom" not in e]
    return Resource(
        job.type, job.name, inputs, job.urn, job.parent_urn, job.protect, job.id, job.dependencies, job.provider
    )


def broken(resources: Sequence[Resource], type_token: str, name: str, path: str, value: Any) -> list[Resource]:
    """A copy of `resources` where input `path` of the one resource (type, name) is `value` (DROP removes it)."""
    out, hits = [], 0
    for r in resources:
        if r.type == type_token and r.name == name:
            hits += 1
            inputs = copy.deepcopy(dict(r.inputs))
            *parents, last = path_parts(path)
            node: Any = inputs
            for part in parents:
                node = node[part]
            if value is DROP:
                del node[last]
            else:
                node[last] = value
            r = Resource(r.type, r.name, inputs, r.urn, r.parent_urn, r.protect, r.id, r.dependencies)
        out.append(r)
    if hits != 1:
        raise AssertionError(f"expected one {type_token} named {name!r}, found {hits}")
    return out


def without(resources: Sequence[Resource], type_token: str, name: str | None = None) -> list[Resource]:
    """A copy of `resources` without the resources of `type_token` (only the one named `name` if given)."""
    return [r for r in resources if not (r.type == type_token and (name is None or r.name == name))]


def unprotected(resources: Sequence[Resource], type_token: str, name: str) -> list[Resource]:
    return [
        Resource(r.type, r.name, r.inputs, r.urn, r.parent_urn, False, r.id, r.dependencies)
        if r.type == type_token and r.name == name
        else r
        for r in resources
    ]
