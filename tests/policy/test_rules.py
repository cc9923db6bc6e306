"""Each rule over hand-built resources: the compliant baseline passes it, and breaking one property fails it with a
message that names the resource, the property, the value found and the value required."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pytest

from drtopo import naming
from drtopo.settings import Settings, load_settings
from policies import resource_types as t
from policies.engine import evaluate_rules
from policies.model import Enforcement, Resource
from policies.registry import RULES, rule_named
from tests.policy.stacks import DROP, baseline, broken, res, unprotected, without
from tests.policy.test_fencing_rules import CASES as FENCING_CASES

Mutation = Callable[[list[Resource], Settings], list[Resource]]


@dataclass(frozen=True)
class Case:
    rule: str
    id: str
    mutate: Mutation
    expect: str
    stack: str = "prod"
    overrides: str = ""  # JSON of load_settings overrides


def set_(type_token: str, name: str, path: str, value: object) -> Mutation:
    return lambda rs, s: broken(rs, type_token, name, path, value)


def drop(type_token: str, name: str | None = None) -> Mutation:
    return lambda rs, s: without(rs, type_token, name)


def plus(type_token: str, name: str, inputs: dict) -> Mutation:
    return lambda rs, s: [*rs, res(s, type_token, name, inputs)]


CRON = "backup-jobs-dump"
POD = "spec.jobTemplate.spec.template.spec"
MM2 = "kafka-mirror-config"
SSE = "rules[0].applyServerSideEncryptionByDefault"
REPLICATION = "rules[0].destination"


def mm2_edit(old: str, new: str) -> Mutation:
    def mutate(rs: list[Resource], s: Settings) -> list[Resource]:
        config_map = next(r for r in rs if r.name == MM2)
        text = config_map.inputs["data"]["mm2.properties"]
        assert old in text, old
        return [
            *without(rs, t.K8S_CONFIGMAP, MM2),
            res(s, t.K8S_CONFIGMAP, MM2, {"data": {"mm2.properties": text.replace(old, new)}}),
        ]

    return mutate


def _oidc(stack: str) -> str:
    kubernetes = load_settings(stack).kubernetes.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps({"kubernetes": {**kubernetes, "oidcIssuer": "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"}})


OIDC = {stack: _oidc(stack) for stack in ("prod", "dr")}


def _edit_policy(rs: list[Resource], name: str, index: int, key: str, value: object) -> list[Resource]:
    policy = next(r for r in rs if r.type == t.IAM_ROLE_POLICY and r.name == name)
    document = json.loads(policy.inputs["policy"])
    document["Statement"][index][key] = value
    return broken(rs, t.IAM_ROLE_POLICY, name, "policy", json.dumps(document))


CASES = [
    # storage
    Case(
        "s3-bucket-kms-encrypted",
        "sse-s3",
        set_(t.BUCKET_SSE, "backups-dumps", f"{SSE}.sseAlgorithm", "AES256"),
        "BucketServerSideEncryptionConfiguration 'backups-dumps': rules[*].applyServerSideEncryptionByDefault"
        ".sseAlgorithm = 'AES256'; required 'aws:kms'",
    ),
    Case(
        "s3-bucket-kms-encrypted",
        "aws-managed-key",
        set_(t.BUCKET_SSE, "backups-wal", f"{SSE}.kmsMasterKeyId", DROP),
        "kmsMasterKeyId = (not set); required a customer-managed key ARN",
    ),
    Case(
        "s3-bucket-kms-encrypted",
        "missing",
        drop(t.BUCKET_SSE, "backups-audit"),
        "Bucket 'backups-audit': BucketServerSideEncryptionConfiguration = (not set)",
    ),
    Case(
        "s3-bucket-versioned",
        "suspended",
        set_(t.BUCKET_VERSIONING, "backups-dumps", "versioningConfiguration.status", "Suspended"),
        "BucketVersioning 'backups-dumps': versioningConfiguration.status = 'Suspended'; required 'Enabled'",
    ),
    Case("s3-bucket-versioned", "missing", drop(t.BUCKET_VERSIONING), "BucketVersioning = (not set)"),
    Case(
        "s3-public-access-blocked",
        "policy-allowed",
        set_(t.BUCKET_PUBLIC_ACCESS_BLOCK, "backups-config", "blockPublicPolicy", False),
        "BucketPublicAccessBlock 'backups-config': blockPublicPolicy = false; required true",
    ),
    Case(
        "s3-public-access-blocked",
        "missing",
        drop(t.BUCKET_PUBLIC_ACCESS_BLOCK, "backups-wal"),
        "Bucket 'backups-wal': BucketPublicAccessBlock = (not set)",
    ),
    Case(
        "s3-tls-only",
        "no-tls-statement",
        set_(t.BUCKET_POLICY, "backups-dumps", "policy", json.dumps({"Statement": [{"Effect": "Allow"}]})),
        "BucketPolicy 'backups-dumps': policy.Statement = 'no statement that denies insecure transport'",
    ),
    Case("s3-tls-only", "missing", drop(t.BUCKET_POLICY), "BucketPolicy = (not set)"),
    Case(
        "s3-encrypted-uploads-only",
        "no-upload-statement",
        set_(t.BUCKET_POLICY, "backups-dumps", "policy", json.dumps({"Statement": []})),
        "no statement that denies unencrypted uploads",
    ),
    # database
    Case(
        "rds-encrypted",
        "unencrypted",
        set_(t.RDS_INSTANCE, "database", "storageEncrypted", False),
        "Instance 'database': storageEncrypted = false; required true",
    ),
    Case(
        "rds-encrypted",
        "replica-without-key",
        set_(t.RDS_INSTANCE, "database", "kmsKeyId", DROP),
        "kmsKeyId = (not set); required a customer-managed KMS key ARN",
        stack="dr",
    ),
    Case(
        "rds-multi-az",
        "single-az",
        set_(t.RDS_INSTANCE, "database", "multiAz", False),
        "Instance 'database': multiAz = false; required true",
    ),
    Case(
        "rds-deletion-protection",
        "off",
        set_(t.RDS_INSTANCE, "database", "deletionProtection", DROP),
        "deletionProtection = (not set); required true",
    ),
    Case(
        "rds-backup-retention",
        "three-days",
        set_(t.RDS_INSTANCE, "database", "backupRetentionPeriod", 3.0),
        "Instance 'database': backupRetentionPeriod = 3; required >= 14 days",
    ),
    Case(
        "rds-not-public",
        "public",
        set_(t.RDS_INSTANCE, "database", "publiclyAccessible", True),
        "publiclyAccessible = true; required false",
    ),
    Case(
        "rds-force-ssl",
        "ssl-optional",
        set_(t.RDS_PARAMETER_GROUP, "database-params", "parameters[0].value", "0"),
        "ParameterGroup 'database-params': parameters[rds.force_ssl] = '0'; required '1'",
    ),
    # generic
    Case(
        "stateful-protected",
        "bucket",
        lambda rs, s: unprotected(rs, t.BUCKET, "backups-dumps"),
        "Bucket 'backups-dumps': opts.protect = false; required true",
    ),
    Case(
        "stateful-protected",
        "database",
        lambda rs, s: unprotected(rs, t.RDS_INSTANCE, "database"),
        "Instance 'database': opts.protect = false",
    ),
    Case(
        "kms-key-rotation",
        "off",
        set_(t.KMS_KEY, "database-key", "enableKeyRotation", False),
        "Key 'database-key': enableKeyRotation = false; required true",
    ),
    # dns
    Case(
        "route53-failover-health-check",
        "no-check",
        set_(t.ROUTE53_RECORD, "dns-record", "healthCheckId", DROP),
        "Record 'dns-record': healthCheckId = (not set); required the id of this region's health check",
    ),
    Case(
        "route53-standby-not-primary",
        "standby-primary",
        set_(t.ROUTE53_RECORD, "dns-record", "failoverRoutingPolicies[0].type", "PRIMARY"),
        "Record 'dns-record': failoverRoutingPolicies[0].type = 'PRIMARY'; required 'SECONDARY'",
        stack="dr",
    ),
    Case(
        "route53-failover-follows-role",
        "primary-secondary",
        set_(t.ROUTE53_RECORD, "dns-record", "failoverRoutingPolicies[0].type", "SECONDARY"),
        "failoverRoutingPolicies[0].type = 'SECONDARY'; required 'PRIMARY' (stack prod has role primary)",
    ),
    Case(
        "route53-failover-through-data-plane",
        "record-on-endpoint-check-only",
        set_(t.ROUTE53_RECORD, "dns-record", "healthCheckId", "dns-health-id"),
        "Record 'dns-record': healthCheckId = 'dns-health-id'; required a calculated check requiring all children",
    ),
    Case(
        "route53-failover-through-data-plane",
        "signal-in-the-failed-region",
        set_(t.ROUTE53_HEALTH_CHECK, "dns-peer-takeover", "cloudwatchAlarmRegion", "us-west-2"),
        "Record 'dns-record': healthCheckId = 'dns-record-health-id'; required a calculated check that includes a "
        "CLOUDWATCH_METRIC check on 'drtopo-us-east-1-takeover' in us-east-1",
        stack="dr",
    ),
    Case(
        "route53-failover-through-data-plane",
        "any-child-is-enough",
        set_(t.ROUTE53_HEALTH_CHECK, "dns-record-health", "childHealthThreshold", 1.0),
        "required a calculated check requiring all children",
    ),
    Case(
        "route53-failover-through-data-plane",
        "no-data-counts-unhealthy",
        set_(t.ROUTE53_HEALTH_CHECK, "dns-peer-takeover", "insufficientDataHealthStatus", "Unhealthy"),
        "HealthCheck 'dns-peer-takeover': insufficientDataHealthStatus = 'Unhealthy'; required 'Healthy'",
    ),
    Case(
        "route53-failover-through-data-plane",
        "no-takeover-alarm",
        drop(t.METRIC_ALARM, "dns-takeover"),
        "stack: takeover alarm = (not set); required a CloudWatch alarm 'drtopo-us-west-2-takeover' in us-west-2",
        stack="dr",
    ),
    # credentials
    Case(
        "db-master-secret-replicated",
        "not-replicated",
        set_(t.SECRET, "database-master-secret", "replicas", []),
        "Secret 'database-master-secret': replicas[*].region = (not set); required 'us-west-2'",
    ),
    Case(
        "db-master-secret-replicated",
        "replica-without-key",
        set_(t.SECRET, "database-master-secret", "replicas[0].kmsKeyId", DROP),
        "replicas[*].kmsKeyId = (not set); required a customer-managed key in the replica's region",
        stack="dr",
    ),
    Case(
        "db-master-secret-replicated",
        "rds-managed-password",
        set_(t.RDS_INSTANCE, "database", "manageMasterUserPassword", True),
        "Instance 'database': manageMasterUserPassword = true; required not set",
    ),
    Case(
        "iam-job-roles-least-privilege",
        "wildcard-action",
        lambda rs, s: _edit_policy(rs, "backup-jobs-pg-dump-role", 0, "Action", ["s3:*"]),
        "RolePolicy 'backup-jobs-pg-dump-role': Statement.Action = 's3:*'; required named actions, no wildcard",
        overrides=OIDC["prod"],
    ),
    Case(
        "iam-job-roles-least-privilege",
        "whole-bucket",
        lambda rs, s: _edit_policy(
            rs, "backup-jobs-pg-dump-role", 1, "Resource", ["arn:aws:s3:::drtopo-us-east-1-dumps/*"]
        ),
        "Resource = 'arn:aws:s3:::drtopo-us-east-1-dumps/*'; required objects under a prefix of the bucket",
        overrides=OIDC["prod"],
    ),
    Case(
        "iam-job-roles-least-privilege",
        "peer-region-bucket",
        lambda rs, s: _edit_policy(
            rs, "backup-jobs-pg-dump-role", 1, "Resource", ["arn:aws:s3:::drtopo-us-east-1-dumps/daily/*"]
        ),
        "Resource = 'arn:aws:s3:::drtopo-us-east-1-dumps/daily/*'; required one of this stack's buckets",
        stack="dr",
        overrides=OIDC["dr"],
    ),
    Case(
        "iam-job-roles-least-privilege",
        "secret-in-the-failed-region",
        lambda rs, s: _edit_policy(
            rs,
            "backup-jobs-pg-dump-role",
            3,
            "Resource",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:drtopo/us-east-1/database/master-??????",
        ),
        "required the database master secret in us-west-2",
        stack="dr",
        overrides=OIDC["dr"],
    ),
    Case(
        "iam-job-roles-least-privilege",
        "any-resource",
        lambda rs, s: _edit_policy(rs, "backup-jobs-config-export-role", 1, "Resource", "*"),
        "Resource = '*'; required a named resource",
        overrides=OIDC["prod"],
    ),
    Case(
        "iam-job-roles-least-privilege",
        "key-through-the-peer-region",
        lambda rs, s: _edit_policy(
            rs,
            "backup-jobs-config-export-role",
            1,
            "Condition",
            {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
        ),
        "Condition.kms:ViaService = 's3.us-east-1.amazonaws.com'; required a service of us-west-2",
        stack="dr",
        overrides=OIDC["dr"],
    ),
    Case(
        "iam-job-roles-least-privilege",
        "any-service-account",
        set_(
            t.IAM_ROLE,
            "backup-jobs-pg-dump-role",
            "assumeRolePolicy",
            json.dumps(
                {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRoleWithWebIdentity",
                            "Principal": {"Federated": "x"},
                            "Condition": {"StringLike": {"x:sub": "*"}},
                        }
                    ]
                }
            ),
        ),
        "required exactly one ServiceAccount of namespace",
        overrides=OIDC["prod"],
    ),
    Case(
        "k8s-job-credentials-through-workload-identity",
        "static-secret-kept",
        lambda rs, s: [
            *without(rs, t.K8S_CRONJOB, CRON),
            *[r for r in baseline(settings_for("prod")) if r.name == CRON],
        ],
        "CronJob 'backup-jobs-dump': containers[*].env[*].valueFrom.secretKeyRef = 'set'; "
        "required no Kubernetes Secret",
        overrides=OIDC["prod"],
    ),
    Case(
        "k8s-job-credentials-through-workload-identity",
        "no-annotation",
        set_(t.K8S_SERVICE_ACCOUNT, "backup-jobs-pg-dump-sa", "metadata.annotations", {}),
        "ServiceAccount 'backup-jobs-pg-dump-sa': metadata.annotations.eks.amazonaws.com/role-arn = (not set)",
        overrides=OIDC["prod"],
    ),
    # regions
    Case(
        "regional-resources-in-own-region",
        "alarm-in-the-peer-region",
        set_(t.METRIC_ALARM, "dns-takeover", "region", "us-east-1"),
        "MetricAlarm 'dns-takeover': region = 'us-east-1'; required 'us-west-2' (the stack's region) or not set",
        stack="dr",
    ),
    Case(
        "regional-resources-in-own-region",
        "topic-in-the-peer-region",
        plus(t.SNS_TOPIC, "dns-alerts", {"region": "us-east-1"}),
        "Topic 'dns-alerts': region = 'us-east-1'; required 'us-west-2'",
        stack="dr",
    ),
    Case(
        "regional-resources-in-own-region",
        "replica-key-in-the-peer-region",
        plus(t.KMS_KEY, "backups-replica-key", {"enableKeyRotation": True, "region": "us-west-2"}),
        "Key 'backups-replica-key': region = 'us-west-2'; required 'us-east-1' (the stack's region) or not set",
    ),
    Case(
        "regional-resources-in-own-region",
        "untagged-copies-key",
        plus(t.KMS_KEY, "database-backup-copies-key", {"enableKeyRotation": True, "region": "us-west-2", "tags": {}}),
        "Key 'database-backup-copies-key': region = 'us-west-2'",
    ),
    Case(
        "route53-health-check-target",
        "wrong-path",
        set_(t.ROUTE53_HEALTH_CHECK, "dns-health", "resourcePath", "/"),
        "HealthCheck 'dns-health': resourcePath = '/'; required '/actuator/health'",
    ),
    # kubernetes
    Case(
        "k8s-no-plaintext-secrets",
        "env-literal",
        set_(t.K8S_CRONJOB, CRON, f"{POD}.containers[0].env[0]", {"name": "PGPASSWORD", "value": "hunter22"}),
        f"CronJob '{CRON}': {POD}.containers[0].env[0] (PGPASSWORD) = '***'; required valueFrom.secretKeyRef",
    ),
    Case(
        "k8s-no-plaintext-secrets",
        "configmap-text",
        plus(t.K8S_CONFIGMAP, "app-config", {"data": {"app.properties": "db.password = hunter22\n"}}),
        "ConfigMap 'app-config': data.app.properties = 'db.password=***'",
    ),
    Case(
        "k8s-cronjob-forbid-concurrency",
        "allow",
        set_(t.K8S_CRONJOB, CRON, "spec.concurrencyPolicy", "Allow"),
        f"CronJob '{CRON}': spec.concurrencyPolicy = 'Allow'; required 'Forbid'",
    ),
    Case(
        "k8s-cronjob-deadlines",
        "no-active-deadline",
        set_(t.K8S_CRONJOB, CRON, "spec.jobTemplate.spec.activeDeadlineSeconds", DROP),
        "spec.jobTemplate.spec.activeDeadlineSeconds = (not set); required a positive number of seconds",
    ),
    Case(
        "k8s-cronjob-history-limits",
        "unbounded",
        set_(t.K8S_CRONJOB, CRON, "spec.failedJobsHistoryLimit", DROP),
        "spec.failedJobsHistoryLimit = (not set); required an explicit limit",
    ),
    Case(
        "k8s-container-limits",
        "no-memory",
        set_(t.K8S_CRONJOB, CRON, f"{POD}.containers[0].resources.limits.memory", DROP),
        f"{POD}.containers[0].resources.limits.memory = (not set); required a limit",
    ),
    Case(
        "k8s-non-root",
        "root-deployment",
        set_(t.K8S_DEPLOYMENT, "kafka-mirror", "spec.template.spec.securityContext", {"runAsUser": 0.0}),
        "Deployment 'kafka-mirror': spec.template.spec.containers[0].securityContext.runAsNonRoot = (not set)",
    ),
    # objectives
    Case(
        "replica-lag-alarm-below-rpo",
        "threshold-at-rpo",
        set_(t.METRIC_ALARM, "database-replica-lag", "threshold", 900.0),
        "MetricAlarm 'database-replica-lag': threshold = 900; required < 900 seconds (database RPO 15 min)",
    ),
    Case(
        "replica-lag-alarm-below-rpo",
        "replica-without-alarm",
        drop(t.METRIC_ALARM),
        "Instance 'database': ReplicaLag alarm = (not set); required a CloudWatch alarm on ReplicaLag",
        stack="dr",
    ),
    Case(
        "replica-lag-alarm-fires-within-rpo",
        "slow-evaluation",
        set_(t.METRIC_ALARM, "database-replica-lag", "evaluationPeriods", 15.0),
        "threshold + period x datapoints = '300 + 900 s'; required <= 900 s",
    ),
    Case(
        "wal-archive-within-rpo",
        "five-minutes",
        set_(t.RDS_PARAMETER_GROUP, "database-params", "parameters[1].value", "300"),
        "ParameterGroup 'database-params': parameters[archive_timeout] = '300'; required 1..60 seconds",
    ),
    Case(
        "s3-replication-within-rpo",
        "thirty-minutes",
        set_(t.BUCKET_REPLICATION, "backups-dumps", f"{REPLICATION}.replicationTime.time.minutes", 30.0),
        "BucketReplicationConfig 'backups-dumps': rules[0].destination.replicationTime = 30; "
        "required <= 15 minutes (region-failure RPO 15 min)",
    ),
    Case(
        "s3-replication-within-rpo",
        "no-delete-markers",
        set_(t.BUCKET_REPLICATION, "backups-wal", "rules[0].deleteMarkerReplication.status", "Disabled"),
        "rules[0].deleteMarkerReplication.status = 'Disabled'; required 'Enabled'",
    ),
    Case(
        "s3-replication-within-rpo",
        "primary-not-replicating",
        drop(t.BUCKET_REPLICATION, "backups-audit"),
        "Bucket 'backups-audit': BucketReplicationConfig = (not set); required replication to the peer region",
    ),
    Case(
        "lifecycle-covers-tiers",
        "daily-one-day",
        set_(t.BUCKET_LIFECYCLE, "backups-dumps", "rules[0].expiration.days", 1.0),
        "BucketLifecycleConfiguration 'backups-dumps': rules[0].expiration.days = 1; required == 30",
    ),
    Case(
        "lifecycle-covers-tiers",
        "yearly-tier-missing",
        set_(t.BUCKET_LIFECYCLE, "backups-config", "rules[3].filter.prefix", "annual/"),
        "BucketLifecycleConfiguration 'backups-config': rules[prefix='yearly/'] = (not set); "
        "required an enabled rule expiring after 2555 days",
    ),
    Case(
        "lifecycle-covers-tiers",
        "no-cold-storage",
        set_(t.BUCKET_LIFECYCLE, "backups-dumps", "rules[2].transitions", DROP),
        "rules[2].transitions = (not set); required GLACIER after 30 days",
    ),
    Case(
        "audit-object-lock",
        "governance",
        set_(t.BUCKET_OBJECT_LOCK, "backups-audit", "rule.defaultRetention.mode", "GOVERNANCE"),
        "BucketObjectLockConfiguration 'backups-audit': rule.defaultRetention.mode = 'GOVERNANCE'; "
        "required 'COMPLIANCE'",
    ),
    Case(
        "audit-object-lock",
        "five-years",
        set_(t.BUCKET_OBJECT_LOCK, "backups-audit", "rule.defaultRetention.years", 5.0),
        "rule.defaultRetention.years = '5 years'; required >= 7 years",
    ),
    Case(
        "audit-object-lock",
        "lock-disabled",
        set_(t.BUCKET, "backups-audit", "objectLockEnabled", DROP),
        "Bucket 'backups-audit': objectLockEnabled = (not set); required true",
    ),
    Case(
        "daily-full-backup",
        "weekly",
        set_(t.K8S_CRONJOB, CRON, "spec.schedule", "15 2 * * 0"),
        f"CronJob '{CRON}': spec.schedule = '15 2 * * 0'; required a schedule that runs every day",
    ),
    Case(
        "daily-full-backup",
        "suspended",
        set_(t.K8S_CRONJOB, CRON, "spec.suspend", True),
        "stack: CronJob running pg_dump = 'suspended'; required an active CronJob with a daily schedule",
    ),
    Case("daily-full-backup", "missing", drop(t.K8S_CRONJOB, CRON), "CronJob running pg_dump = (not set)"),
    Case(
        "restore-test-scheduled",
        "missing",
        drop(t.K8S_CRONJOB, "backup-jobs-restore-test"),
        "stack: CronJob running scripts.backup restore-test = (not set); required an active CronJob",
    ),
    Case(
        "restore-test-scheduled",
        "suspended",
        set_(t.K8S_CRONJOB, "backup-jobs-restore-test", "spec.suspend", True),
        "CronJob running scripts.backup restore-test = 'suspended'",
    ),
    Case(
        "restore-test-scheduled",
        "bad-schedule",
        set_(t.K8S_CRONJOB, "backup-jobs-restore-test", "spec.schedule", "61 4 * * 0"),
        "CronJob 'backup-jobs-restore-test': spec.schedule = '61 4 * * 0'; required a valid cron schedule",
    ),
    Case(
        "mirrormaker-within-kafka-rpo",
        "checkpoints-ten-minutes",
        mm2_edit("emit.checkpoints.interval.seconds = 10", "emit.checkpoints.interval.seconds = 600"),
        "ConfigMap 'kafka-mirror-config': data.mm2.properties: us-east-1->us-west-2.emit.checkpoints.interval"
        ".seconds = '600'; required <= 300 (Kafka RPO 5 min)",
        stack="dr",
    ),
    Case(
        "mirrormaker-within-kafka-rpo",
        "offset-sync-off",
        mm2_edit("sync.group.offsets.enabled = true", "sync.group.offsets.enabled = false"),
        "us-east-1->us-west-2.sync.group.offsets.enabled = 'false'; required true",
        stack="dr",
    ),
    Case(
        "mirrormaker-within-kafka-rpo",
        "topic-not-mirrored",
        mm2_edit("OrderRejected|", ""),
        "us-east-1->us-west-2.topics = 'OrderCancelled|",
        stack="dr",
    ),
    Case(
        "mirrormaker-within-kafka-rpo",
        "missing",
        drop(t.K8S_CONFIGMAP),
        "stack: MirrorMaker 2 ConfigMap = (not set); required a ConfigMap holding mm2.properties",
    ),
    Case(
        "dns-detection-within-rto",
        "slow-detection",
        lambda rs, s: set_(t.ROUTE53_HEALTH_CHECK, "dns-health", "failureThreshold", 10.0)(
            set_(t.ROUTE53_HEALTH_CHECK, "dns-health", "requestInterval", 30.0)(rs, s), s
        ),
        "HealthCheck 'dns-health': requestInterval x failureThreshold = '30 s x 10 = 300 s'; required <= 120 s "
        "(10% of the region-failure RTO 20 min)",
        overrides=json.dumps({"objectives": {"regionFailure": {"rtoMinutes": 20, "rpoMinutes": 15}}}),
    ),
    Case(
        "k8s-stack-provider",
        "ambient-provider",
        lambda rs, s: [dataclasses.replace(r, provider="") if r.type == t.K8S_CRONJOB else r for r in rs],
        "CronJob 'backup-jobs-dump': provider = 'the ambient default provider'; required a kubernetes provider with "
        "context 'biopro-us-east-1'",
    ),
    Case(
        "k8s-stack-provider",
        "peer-cluster",
        set_(t.K8S_PROVIDER, "kubernetes", "context", "biopro-us-west-2"),
        "ConfigMap 'kafka-mirror-config': provider = 'urn:pulumi:prod::drtopo::pulumi:providers:kubernetes::",
    ),
    # notifications
    Case(
        "alarms-notify-someone",
        "topic-without-subscriber",
        drop(t.SNS_TOPIC_SUBSCRIPTION, "database-alerts-sub-0"),
        "MetricAlarm 'database-replica-lag': alarmActions = 'arn:aws:sns:us-east-1:123456789012:database-alerts'; "
        "required an SNS topic this stack declares, with at least one subscription (drtopo:notifications.alerts) "
        "(topic 'database-alerts' has no subscription)",
    ),
    Case(
        "alarms-notify-someone",
        "standby-topic-without-subscriber",
        drop(t.SNS_TOPIC_SUBSCRIPTION, "dns-alerts-sub-0"),
        "MetricAlarm 'dns-takeover': okActions = 'arn:aws:sns:us-west-2:123456789012:dns-alerts'; required an SNS",
        stack="dr",
    ),
    Case(
        "alarms-notify-someone",
        "no-alarm-action",
        set_(t.METRIC_ALARM, "dns-takeover", "alarmActions", []),
        "MetricAlarm 'dns-takeover': alarmActions = (not set); required an SNS topic this stack declares, with at "
        "least one subscription (drtopo:notifications.alerts) (an alarm that notifies no one)",
        stack="dr",
    ),
    Case(
        "alarms-notify-someone",
        "topic-outside-the-stack",
        set_(t.METRIC_ALARM, "database-replica-lag", "okActions", ["arn:aws:sns:us-east-1:999999999999:elsewhere"]),
        "okActions = 'arn:aws:sns:us-east-1:999999999999:elsewhere'; required an SNS topic this stack declares, "
        "with at least one subscription (drtopo:notifications.alerts) (a topic outside the stack cannot be checked)",
    ),
    Case(
        "incident-topic-in-own-region",
        "missing",
        drop(t.SNS_TOPIC, "incidents"),
        "stack: SNS topic drtopo-us-west-2-incidents = (not set); required the incident topic in us-west-2",
        stack="dr",
    ),
    Case(
        "incident-topic-in-own-region",
        "no-subscriber",
        drop(t.SNS_TOPIC_SUBSCRIPTION, "incidents-sub-0"),
        "Topic 'incidents': subscriptions = 0; required at least 1 (drtopo:notifications.incidents) (it tells no one)",
    ),
    Case(
        "incident-topic-in-own-region",
        "in-the-peer-region",
        set_(t.SNS_TOPIC, "incidents", "region", "us-east-1"),
        "Topic 'incidents': region = 'us-east-1'; required 'us-west-2' (the stack's region) or not set",
        stack="dr",
    ),
    Case(
        "incident-topic-in-own-region",
        "unencrypted",
        set_(t.SNS_TOPIC, "incidents", "kmsMasterKeyId", DROP),
        "Topic 'incidents': kmsMasterKeyId = (not set); required a customer-managed KMS key",
    ),
    Case(
        "regional-resources-in-own-region",
        "subscription-in-the-peer-region",
        set_(t.SNS_TOPIC_SUBSCRIPTION, "incidents-sub-0", "region", "us-east-1"),
        "TopicSubscription 'incidents-sub-0': region = 'us-east-1'; required 'us-west-2' (the stack's region)",
        stack="dr",
    ),
    # the scheduled readiness check (on the standby)
    Case(
        "readiness-check-scheduled",
        "no-job",
        drop(t.K8S_CRONJOB, "readiness-check"),
        "CronJob readiness-check = (not set); required the readiness check",
        stack="dr",
    ),
    Case(
        "readiness-check-scheduled",
        "silence-not-alarmed",
        set_(t.METRIC_ALARM, "readiness-check-alarm", "treatMissingData", "notBreaching"),
        "MetricAlarm 'readiness-check-alarm': treatMissingData = 'notBreaching'; required 'breaching'",
        stack="dr",
    ),
    Case(
        "readiness-role-least-privilege",
        "writes-the-whole-config-bucket",
        lambda rs, s: _edit_policy(
            rs, "readiness-check-role", 2, "Resource", f"arn:aws:s3:::{naming.bucket_name(s, 'config')}/*"
        ),
        "Statement[WriteReadiness].Resource = 'arn:aws:s3:::drtopo-us-west-2-config/*'; required "
        "arn:aws:s3:::drtopo-us-west-2-config/readiness/dr/* only",
        stack="dr",
        overrides=OIDC["dr"],
    ),
    Case(
        "readiness-role-least-privilege",
        "metrics-in-any-namespace",
        lambda rs, s: _edit_policy(rs, "readiness-check-role", -1, "Condition", {}),
        "Statement[PutReadinessMetrics].Condition.cloudwatch:namespace = (not set); required drtopo/Readiness",
        stack="dr",
        overrides=OIDC["dr"],
    ),
    # application
    Case(
        "pilot-light-within-rto",
        "rto-too-short",
        lambda rs, s: rs,
        "standby replicas = 0; required >= 1 (warm standby), or a region-failure RTO of at least 480 s (detection "
        "30 s + decision 120 s + dns 30 s + application start (drtopo:application.startSeconds) 300 s = 480 s "
        "exceeds the region-failure RTO of 300 s)",
        stack="dr",
        overrides=json.dumps({"objectives": {"regionFailure": {"rtoMinutes": 5, "rpoMinutes": 0.1}}}),
    ),
    Case(
        "pilot-light-within-rto",
        "slow-start",
        lambda rs, s: rs,
        "= 7480 s exceeds the region-failure RTO of 7200 s",
        stack="prod",
        overrides=json.dumps(
            {
                "application": {"startSeconds": 7300},
                "objectives": {"regionFailure": {"rtoMinutes": 120, "rpoMinutes": 0.1}},
            }
        ),
    ),
    Case(
        "pilot-light-within-rto",
        "primary-scaled-to-zero",
        set_(t.K8S_DEPLOYMENT_PATCH, "application-replicas", "spec.replicas", 0),
        "DeploymentPatch 'application-replicas': spec.replicas = 0; required 3",
    ),
    Case(
        "pilot-light-within-rto",
        "missing",
        drop(t.K8S_DEPLOYMENT_PATCH),
        "DeploymentPatch of interface-exception-collector = (not set)",
    ),
    # images
    Case(
        "workload-image-own-region",
        "the-primarys-registry",
        set_(
            t.K8S_DEPLOYMENT,
            "kafka-mirror",
            "spec.template.spec.containers[0].image",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/drtopo/kafka:3.9.1",
        ),
        "required <account>.dkr.ecr.us-west-2.amazonaws.com/<repository> (another region's registry (us-east-1)",
        stack="dr",
    ),
    Case(
        "workload-image-own-region",
        "public-registry",
        set_(t.K8S_CRONJOB, CRON, f"{POD}.containers[0].image", "ghcr.io/biopro/drtopo-backup:1.0.0-pg15"),
        "image = 'ghcr.io/biopro/drtopo-backup:1.0.0-pg15'; required <account>.dkr.ecr.us-east-1.amazonaws.com",
    ),
    Case(
        "images-in-both-regions",
        "no-repository",
        drop(t.ECR_REPOSITORY, "images-backup"),
        "ecr.Repository drtopo/backup = (not set); required declared",
        stack="dr",
    ),
    Case(
        "images-in-both-regions",
        "not-replicated",
        drop(t.ECR_REPLICATION),
        "required a rule replicating drtopo/kafka to us-west-2",
    ),
    Case(
        "images-in-both-regions",
        "replicated-elsewhere",
        set_(
            t.ECR_REPLICATION,
            "images-replication",
            "replicationConfiguration.rules[0].destinations[0].region",
            "eu-west-1",
        ),
        "required a rule replicating drtopo/backup to us-west-2",
    ),
    # volumes
    Case(
        "volume-backups-every-tier-copied",
        "no-selection",
        drop(t.BACKUP_SELECTION),
        "backup.Selection = (not set); required volumes tagged kubernetes.io/created-for/pvc/namespace=biopro-prod",
    ),
    Case(
        "volume-backups-every-tier-copied",
        "yearly-too-short",
        set_(t.BACKUP_PLAN, "volumes-plan", "rules[3].lifecycle.deleteAfter", 365.0),
        "rules[yearly].lifecycle.deleteAfter = [365.0]; required >= 2555 (retention.yearly)",
    ),
    Case(
        "volume-backups-every-tier-copied",
        "copied-within-the-region",
        set_(
            t.BACKUP_PLAN,
            "volumes-plan",
            "rules[0].copyActions[0].destinationVaultArn",
            "arn:aws:backup:us-east-1:123456789012:backup-vault:drtopo-us-east-1-volumes",
        ),
        "rules[daily].copyActions = ['arn:aws:backup:us-east-1:123456789012:backup-vault:drtopo-us-east-1-volumes']",
    ),
    Case(
        "volume-backups-every-tier-copied",
        "no-plan",
        drop(t.BACKUP_PLAN),
        "backup.Plan of the namespace's volumes = (not set)",
        stack="dr",
    ),
]


@cache
def settings_for(stack: str, overrides: str = "") -> Settings:
    return load_settings(stack, overrides=json.loads(overrides) if overrides else None)


def violations_of(rule: str, resources: list[Resource], settings: Settings) -> list[str]:
    return [v.message for v in evaluate_rules(resources, settings, [rule_named(rule)])]


def test_every_rule_has_a_failing_case() -> None:
    # The lease's rules are shown failing on the program itself (tests/policy/test_fencing_rules.py).
    assert {r.name for r in RULES} - {c.rule for c in CASES} - {c.rule for c in FENCING_CASES} == set()


@pytest.mark.parametrize("stack", ["prod", "dr"])
@pytest.mark.parametrize("rule", [r.name for r in RULES])
def test_baseline_passes(rule: str, stack: str) -> None:
    settings = settings_for(stack)
    assert violations_of(rule, baseline(settings), settings) == []


@pytest.mark.parametrize("stack", ["prod", "dr"])
@pytest.mark.parametrize("rule", [r.name for r in RULES])
def test_baseline_with_workload_identity_passes(rule: str, stack: str) -> None:
    settings = settings_for(stack, OIDC[stack])
    assert settings.kubernetes.oidc_issuer
    assert violations_of(rule, baseline(settings), settings) == []


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}:{c.id}" for c in CASES])
def test_broken_property_is_caught(case: Case) -> None:
    settings = settings_for(case.stack, case.overrides)
    messages = violations_of(case.rule, case.mutate(baseline(settings), settings), settings)
    assert any(case.expect in m for m in messages), messages


def test_enforcement_levels() -> None:
    advisory = {r.name for r in RULES if r.enforcement is Enforcement.ADVISORY}
    assert advisory == {"s3-encrypted-uploads-only", "k8s-cronjob-history-limits", "replica-lag-alarm-fires-within-rpo"}
