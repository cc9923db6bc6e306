"""The scheduled readiness check: a CronJob in the standby's cluster runs `scripts.status --publish` every hour, and
an alarm on what it publishes routes to an alert topic (drtopo/readiness/schedule.py says what runs and how the
alarm judges).

It runs on the standby: its region is the one that must take over, and the check reads the primary from there as a
failover would. Both roles declare it, as the dump job is declared by both (a role switch then replaces nothing and
removes no protected key): on the primary the CronJob is suspended and the alarm treats missing data as not
breaching. The job runs the backup image as its own ServiceAccount (no Kubernetes API token) with the pod security
of the backup jobs, and reads a ConfigMap of its own at /etc/drtopo: both stacks' outputs (`<stack>.json`; the
primary's from `primaryStackReference`, so with `replicationSourceArn` alone the peer's outputs are missing and the
replica lag item says so) and both stack files. With `kubernetes.oidcIssuer` set it gets its own IAM role (IRSA)
allowed to read exactly what the status command reads, to write only `readiness/<stack>/` in its configuration
bucket and to put metrics only in the `drtopo/Readiness` namespace (`readiness_policy`; policy rule
readiness-role-least-privilege). Exit 1 (an item at risk) and exit 2 (bad input) fail the Job without a retry: the
run has published its verdict, and a retry would only repeat it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi_aws import cloudwatch, get_caller_identity_output
from pulumi_kubernetes.batch.v1 import CronJob
from pulumi_kubernetes.core.v1 import ConfigMap, ServiceAccount

from components.alerts import AlertTopic, AlertTopicArgs
from components.backup_jobs import (
    BACKUP_UID,
    WORKLOAD_ROLE_ANNOTATION,
    JobLimits,
    job_env,
    outputs_key_is_secret,
    stack_config_yaml,
)
from components.identity import WorkloadRole, WorkloadRoleArgs, secret_arn
from components.pod_security import Resources, container_security, labels, pod_security, scratch_volume
from components.storage import backup_key_alias
from drtopo import naming
from drtopo.backup import wal
from drtopo.failover.marker import marker_name
from drtopo.readiness import drills, schedule
from drtopo.readiness.publish import NAMESPACE
from drtopo.settings import REPO_DIR, Settings, SettingsError, load_settings, stack_file
from drtopo.tiers import TIERS

COMPONENT = "readiness"
CONTAINER = "status"
# status: 1 when an item is at risk, 2 for bad input; both are the run's verdict, not a crash to retry.
VERDICT_EXIT_CODES = (1, 2)
# A run takes a minute or two; one that has not started within half an hour is the next hour's.
LIMITS = JobLimits(starting_deadline_seconds=1800, active_deadline_seconds=900)


def database_key_alias(region: str) -> str:
    """The alias of the database key of the stack in `region` (components/database.py), without `alias/`."""
    return f"drtopo-{region}-database"


def _key_by_alias(sid: str, region: str, account_id: str, alias: str, service: str) -> dict[str, Any]:
    """Decrypt with the key behind `alias` in `region`, only through `service` there (IAM matches keys by key ARN,
    so the statement names the region's keys and narrows them to the alias's)."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": f"arn:aws:kms:{region}:{account_id}:key/*",
        "Condition": {
            "StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"},
            "ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{alias}"},
        },
    }


def readiness_policy(settings: Settings, account_id: str, config_bucket: str, backup_key_arn: str) -> str:
    """The readiness job: read what `scripts.status` reads (the primary's dumps and WAL archive with their key, both
    regions' copy of the primary's master secret with their database keys, the role marker in both regions, both
    databases' descriptions, RDS's ReplicaLag; its own drill reports), write only `readiness/<stack>/` of its
    configuration bucket, and put metrics only in the readiness namespace."""
    region = settings.region
    primary = region if settings.is_primary else settings.peer_region
    primary_settings = settings.model_copy(update={"region": primary})
    config = f"arn:aws:s3:::{config_bucket}"
    dumps = f"arn:aws:s3:::{naming.bucket_name(primary_settings, 'dumps')}"
    archive = f"arn:aws:s3:::{naming.bucket_name(primary_settings, 'wal')}"
    secret = naming.db_secret_name(primary)
    marker = marker_name(settings.stack, settings.peer_stack)
    regions = (region, settings.peer_region)
    instances = [
        f"arn:aws:rds:{r}:{account_id}:db:{naming.db_identifier(settings.model_copy(update={'region': r}), 0)}*"
        for r in regions
    ]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListBuckets",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": [config, dumps, archive],
                },
                {
                    "Sid": "ReadDrillReports",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": f"{config}/{drills.PREFIX}*",
                },
                {
                    "Sid": "WriteReadiness",
                    "Effect": "Allow",
                    "Action": ["s3:PutObject"],
                    "Resource": f"{config}/{schedule.readiness_prefix(settings.stack)}*",
                },
                {
                    "Sid": "ReadPrimaryDumps",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"{dumps}/{tier}/*" for tier in TIERS],
                },
                {
                    "Sid": "ReadPrimaryWal",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"{archive}/{wal.WAL_PREFIX}*", f"{archive}/{wal.BASE_PREFIX}*"],
                },
                {
                    "Sid": "OwnBackupKeyThroughS3",
                    "Effect": "Allow",
                    "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                    "Resource": backup_key_arn,
                    "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
                },
                *(
                    ()
                    if settings.is_primary
                    else (
                        _key_by_alias(
                            "PrimaryBackupKeyThroughS3", primary, account_id, backup_key_alias(primary), "s3"
                        ),
                    )
                ),
                {
                    "Sid": "ReadPrimaryMasterSecret",
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue"],
                    "Resource": [secret_arn(r, account_id, secret) for r in regions],
                },
                *(
                    _key_by_alias(
                        f"DatabaseKeyThroughSecretsManager{i}", r, account_id, database_key_alias(r), "secretsmanager"
                    )
                    for i, r in enumerate(regions, 1)
                ),
                {
                    "Sid": "ReadRoleMarker",
                    "Effect": "Allow",
                    "Action": ["ssm:GetParameter"],
                    "Resource": [f"arn:aws:ssm:{r}:{account_id}:parameter{marker}" for r in regions],
                },
                {
                    "Sid": "DescribeDatabases",
                    "Effect": "Allow",
                    "Action": ["rds:DescribeDBInstances"],
                    "Resource": instances,
                },
                {
                    # Neither CloudWatch action supports resource-level permissions; PutMetricData is narrowed to the
                    # readiness namespace.
                    "Sid": "ReadReplicaLag",
                    "Effect": "Allow",
                    "Action": ["cloudwatch:GetMetricStatistics"],
                    "Resource": "*",
                },
                {
                    "Sid": "PutReadinessMetrics",
                    "Effect": "Allow",
                    "Action": ["cloudwatch:PutMetricData"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
                },
            ],
        }
    )


def peer_outputs_json(outputs: Mapping[str, Any]) -> str:
    """The primary's exported outputs as the job reads them: the non-secret keys only (pure)."""
    return json.dumps({k: v for k, v in outputs.items() if not outputs_key_is_secret(k)}, indent=2, sort_keys=True)


@dataclass(frozen=True)
class ReadinessCheckArgs:
    """`outputs`: this stack's exported outputs (as BackupJobsArgs takes them); the peer's stack file is read from
    `project_dir` (the repository's stack files; a preview warns when the peer's is not there)."""

    settings: Settings
    outputs: Mapping[str, pulumi.Input[Any]]
    project_dir: Path = REPO_DIR
    limits: JobLimits = LIMITS
    resources: Resources = field(
        default_factory=lambda: Resources(
            cpu_request="100m", memory_request="256Mi", cpu_limit="1", memory_limit="512Mi"
        )
    )


class ReadinessCheck(pulumi.ComponentResource):
    """The hourly readiness CronJob (running on the standby), its ServiceAccount (and IAM role), ConfigMap and alarm."""

    def __init__(self, name: str, args: ReadinessCheckArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:readiness:ReadinessCheck", name, None, opts)
        settings = args.settings
        self._settings = settings
        namespace = settings.kubernetes.namespace
        child = pulumi.ResourceOptions(parent=self)
        job_labels = labels(schedule.JOB, COMPONENT)
        files: dict[str, pulumi.Input[str]] = {
            schedule.outputs_file(settings.stack): pulumi.Output.all(**dict(args.outputs)).apply(
                lambda values: json.dumps(values, indent=2, sort_keys=True)
            ),
            stack_file(settings.stack).name: stack_config_yaml(settings),
        }
        try:
            peer = load_settings(settings.peer_stack, args.project_dir)
        except SettingsError as exc:
            # Without it the job stops at bad input (exit 2) and publishes nothing: the alarm fires on the silence.
            pulumi.log.warn(f"readiness check: the peer's stack file is not in its folder ({exc})", resource=self)
        else:
            files[stack_file(peer.stack).name] = stack_config_yaml(peer)
        if settings.primary_stack_reference and not settings.is_primary:
            reference = pulumi.StackReference(settings.primary_stack_reference, opts=child)
            files[schedule.outputs_file(settings.peer_stack)] = reference.outputs.apply(peer_outputs_json)
        self.config_map = ConfigMap(
            f"{name}-config",
            metadata={"name": schedule.CONFIG_MAP, "namespace": namespace, "labels": job_labels},
            data=files,
            opts=child,
        )
        self.role = self._role(name, args) if settings.kubernetes.oidc_issuer else None
        role_arn = self.role.arn if self.role is not None else settings.kubernetes.workload_role_arn
        self.account = ServiceAccount(
            f"{name}-sa",
            metadata={
                "name": schedule.JOB,
                "namespace": namespace,
                "labels": job_labels,
                "annotations": {WORKLOAD_ROLE_ANNOTATION: role_arn} if role_arn else {},
            },
            automount_service_account_token=False,
            opts=child,
        )
        limits = args.limits
        self.cron_job = CronJob(
            name,
            metadata={"name": schedule.JOB, "namespace": namespace, "labels": job_labels},
            spec={
                "schedule": schedule.SCHEDULE,
                "time_zone": "Etc/UTC",
                "concurrency_policy": "Forbid",
                # The standby asks; the primary's job waits for a role switch, as the standby's dump job does.
                "suspend": settings.is_primary,
                "starting_deadline_seconds": limits.starting_deadline_seconds,
                "successful_jobs_history_limit": limits.successful_history,
                "failed_jobs_history_limit": limits.failed_history,
                "job_template": {
                    "metadata": {"labels": job_labels},
                    "spec": {
                        "backoff_limit": limits.backoff_limit,
                        "active_deadline_seconds": limits.active_deadline_seconds,
                        "pod_failure_policy": {
                            "rules": [
                                {
                                    "action": "FailJob",
                                    "on_exit_codes": {
                                        "container_name": CONTAINER,
                                        "operator": "In",
                                        "values": list(VERDICT_EXIT_CODES),
                                    },
                                }
                            ]
                        },
                        "template": {
                            "metadata": {"labels": job_labels},
                            "spec": {
                                "service_account_name": schedule.JOB,
                                "automount_service_account_token": False,
                                "restart_policy": "Never",
                                "security_context": pod_security(BACKUP_UID),
                                "volumes": [
                                    {"name": "drtopo", "config_map": {"name": schedule.CONFIG_MAP}},
                                    scratch_volume("tmp", "256Mi"),
                                ],
                                "containers": [self._container(args.resources)],
                            },
                        },
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.config_map, self.account]),
        )
        alerts = AlertTopic(
            f"{name}-alerts",
            AlertTopicArgs(
                description=f"drtopo readiness of {settings.stack} in {settings.region}",
                alias=f"drtopo-{settings.region}-readiness-alerts",
                subscriptions=settings.notifications.alerts,
            ),
            child,
        )
        spec = schedule.alarm_spec(settings.stack)
        self.alarm = cloudwatch.MetricAlarm(
            f"{name}-alarm",
            name=spec["AlarmName"],
            alarm_description=spec["AlarmDescription"],
            namespace=spec["Namespace"],
            metric_name=spec["MetricName"],
            dimensions={d["Name"]: d["Value"] for d in spec["Dimensions"]},
            statistic=spec["Statistic"],
            period=spec["Period"],
            evaluation_periods=spec["EvaluationPeriods"],
            datapoints_to_alarm=spec["DatapointsToAlarm"],
            threshold=spec["Threshold"],
            comparison_operator=spec["ComparisonOperator"],
            # A suspended job publishes nothing: silence is breaching only where the check runs.
            treat_missing_data="notBreaching" if settings.is_primary else spec["TreatMissingData"],
            alarm_actions=[alerts.topic_arn],
            ok_actions=[alerts.topic_arn],
            opts=child,
        )
        self.register_outputs(
            {
                "job": schedule.JOB,
                "schedule": schedule.SCHEDULE,
                "alarmName": spec["AlarmName"],
                "alertTopicArn": alerts.topic_arn,
                "roleArn": self.role.arn if self.role is not None else None,
            }
        )

    def _role(self, name: str, args: ReadinessCheckArgs) -> WorkloadRole:
        settings = self._settings
        account = get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        policy = pulumi.Output.all(account, args.outputs["configBucket"], args.outputs["kmsKeyArn"]).apply(
            lambda v: readiness_policy(settings, v[0], v[1], v[2])
        )
        return WorkloadRole(
            f"{name}-role",
            WorkloadRoleArgs(
                role_name=f"drtopo-{settings.region}-{schedule.JOB}",
                account_id=account,
                issuer=str(settings.kubernetes.oidc_issuer),
                namespace=settings.kubernetes.namespace,
                service_account=schedule.JOB,
                policy=policy,
            ),
            pulumi.ResourceOptions(parent=self),
        )

    def _container(self, resources: Resources) -> dict[str, Any]:
        settings = self._settings
        kubernetes = settings.kubernetes
        env = job_env(settings, schedule.CONFIG_DIR)
        return {
            "name": CONTAINER,
            "image": kubernetes.backup_image,
            "image_pull_policy": "IfNotPresent",
            "command": schedule.command(settings.stack),
            "env": env,
            "resources": resources.spec(),
            "security_context": container_security(BACKUP_UID),
            "volume_mounts": [
                {"name": "drtopo", "mount_path": schedule.CONFIG_DIR, "read_only": True},
                {"name": "tmp", "mount_path": "/tmp"},
            ],
        }
