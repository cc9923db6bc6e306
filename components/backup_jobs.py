"""The backup CronJobs on Kubernetes: the daily full pg_dump (then its verification) and the configuration export.

Both jobs run the backup image (see Dockerfile) with `python -m scripts.backup`. They read the stack's non-secret
outputs and its validated settings from a ConfigMap mounted at /etc/drtopo, so a role switch updates the mounted
files in place and never the image. Database credentials come only from a Kubernetes Secret (`secretKeyRef`) or,
with workload identity, from the database's master secret in this stack's region (drtopo/database/connect.py reads
`dbPasswordSecretArn` with a client of the stack's region); never from a literal. With `kubernetes.oidcIssuer` set
the program declares one IAM role per job (components/identity.py: IRSA, least privilege) and drops the Kubernetes
Secret from the dump; `kubernetes.workloadRoleArn` instead names one role made elsewhere. The export job's Role reads
the namespace's configuration kinds and not Secrets.
Every object inherits this stack's own Kubernetes provider (drtopo:kubernetes.context) from the component's
options (components/topology.py); policy rule k8s-stack-provider checks it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml
from pulumi_aws import get_caller_identity_output
from pulumi_kubernetes.batch.v1 import CronJob
from pulumi_kubernetes.core.v1 import ConfigMap, ServiceAccount
from pulumi_kubernetes.rbac.v1 import Role, RoleBinding

from components.identity import WorkloadRole, WorkloadRoleArgs, dump_policy, export_policy, secret_arn
from components.pod_security import Resources, container_security, labels, pod_security, scratch_volume
from drtopo import naming
from drtopo.outputs import REQUIRED_KEYS
from drtopo.settings import PROJECT, Settings, SettingsError, stack_file

CONFIG_MAP = "drtopo-backup-config"
CONFIG_DIR = "/etc/drtopo"
OUTPUTS_FILE = "outputs.json"
DUMP_JOB = "pg-dump"
EXPORT_JOB = "config-export"
RESTORE_TEST_JOB = "restore-test"
# The backup image's non-root user (Dockerfile: USER 10001).
BACKUP_UID = 10001
# Where the backup image keeps the RDS CA bundle (Dockerfile), so libpq verifies the server's certificate.
RDS_CA_BUNDLE = "/etc/ssl/certs/rds-global-bundle.pem"
WORKLOAD_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
# Read-only access for the configuration export: every namespaced kind it reads (drtopo/backup/kube_export.py exports
# what discovery lists minus what the cluster recreates), never Secrets. Kubernetes' built-in kinds, and the kinds
# of the monitoring and snapshot APIs for clusters that serve them (a rule on a kind not served grants nothing).
# A served kind missing here fails the export by name, never silently.
EXPORT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "",
        (
            "configmaps",
            "services",
            "serviceaccounts",
            "persistentvolumeclaims",
            "limitranges",
            "resourcequotas",
            "pods",
            "podtemplates",
            "replicationcontrollers",
        ),
    ),
    ("apps", ("deployments", "statefulsets", "daemonsets")),
    ("batch", ("cronjobs", "jobs")),
    ("autoscaling", ("horizontalpodautoscalers",)),
    ("policy", ("poddisruptionbudgets",)),
    ("networking.k8s.io", ("ingresses", "networkpolicies")),
    ("rbac.authorization.k8s.io", ("roles", "rolebindings")),
    ("resource.k8s.io", ("resourceclaims", "resourceclaimtemplates")),
    ("snapshot.storage.k8s.io", ("volumesnapshots",)),
    ("monitoring.coreos.com", ("prometheusrules", "servicemonitors", "podmonitors", "alertmanagerconfigs")),
)
EXPORT_VERBS = ("get", "list")
# The export's first call checks its own namespace (`kubectl get namespace <ns>`): `get` on that one name only. It
# gets no `list secrets`: listing Secrets returns their values, which the export never keeps.


def export_rules(namespace: str) -> list[dict[str, Any]]:
    """The export's read-only rules in `namespace`: every kind of EXPORT_RULES, and `get` on that namespace only."""
    return [
        *(
            {"api_groups": [group], "resources": list(resources), "verbs": list(EXPORT_VERBS)}
            for group, resources in EXPORT_RULES
        ),
        {"api_groups": [""], "resources": ["namespaces"], "verbs": ["get"], "resource_names": [namespace]},
    ]


_SECRET_WORDS = ("password", "secret", "token", "privatekey")


def outputs_key_is_secret(key: str) -> bool:
    """Keys that may hold a secret value; references to secrets (`...SecretArn`, `...Id`, `...Name`) are fine."""
    return not key.endswith(("Arn", "Id", "Name")) and any(word in key.lower() for word in _SECRET_WORDS)


def stack_config(settings: Settings) -> dict[str, Any]:
    """The `Pulumi.<stack>.yaml` document equivalent to `settings`: what `load_settings` reads inside the job."""
    values = settings.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"stack"})
    config = {("aws:region" if key == "region" else f"{PROJECT}:{key}"): value for key, value in values.items()}
    return {"config": config}


def stack_config_yaml(settings: Settings) -> str:
    return yaml.safe_dump(stack_config(settings), sort_keys=False)


def backup_command(settings: Settings, verb: str, *extra: str) -> list[str]:
    """`python -m scripts.backup <verb> [extra] --stack <stack> --outputs /etc/drtopo/outputs.json`."""
    return [
        "python",
        "-m",
        "scripts.backup",
        verb,
        *extra,
        "--stack",
        settings.stack,
        "--outputs",
        f"{CONFIG_DIR}/{OUTPUTS_FILE}",
    ]


def job_env(settings: Settings, config_dir: str) -> list[dict[str, Any]]:
    """The environment every job in the backup image runs with: its files, its region, TLS to RDS checked, and the
    database password from its Secret unless a workload role reads the master secret instead."""
    kubernetes = settings.kubernetes
    env: list[dict[str, Any]] = [
        {"name": "DRTOPO_PROJECT_DIR", "value": config_dir},
        {"name": "AWS_REGION", "value": settings.region},
        {"name": "AWS_DEFAULT_REGION", "value": settings.region},
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        # RDS forces TLS; the image carries the RDS CA bundle so the server's identity is checked too.
        {"name": "PGSSLMODE", "value": "verify-full"},
        {"name": "PGSSLROOTCERT", "value": RDS_CA_BUNDLE},
    ]
    if kubernetes.oidc_issuer is None:
        env.append(
            {
                "name": "PGPASSWORD",
                "value_from": {
                    "secret_key_ref": {
                        "name": kubernetes.database_secret,
                        "key": "password",
                        # With a workload role the job may read the master secret in this region instead
                        # (drtopo/database/connect.py).
                        "optional": kubernetes.workload_role_arn is not None,
                    }
                },
            }
        )
    return env


@dataclass(frozen=True)
class JobLimits:
    """How long a job may wait to start and run, how often it is retried, and how many finished jobs are kept."""

    starting_deadline_seconds: int
    active_deadline_seconds: int
    backoff_limit: int = 2
    successful_history: int = 3
    failed_history: int = 5


@dataclass(frozen=True)
class BackupJobsArgs:
    """What the backup CronJobs are built from.

    `outputs` are this stack's exported outputs (camelCase keys, as `pulumi stack output --json` prints them):
    every key `drtopo.outputs.StackOutputs` requires, none holding a secret value. The schedules come from
    `settings.kubernetes`, which has already checked them (the dump runs exactly once a day).
    """

    settings: Settings
    outputs: Mapping[str, pulumi.Input[Any]]
    dump_limits: JobLimits = JobLimits(starting_deadline_seconds=3600, active_deadline_seconds=4 * 3600)
    export_limits: JobLimits = JobLimits(starting_deadline_seconds=1800, active_deadline_seconds=1800)
    dump_resources: Resources = field(
        default_factory=lambda: Resources(cpu_request="250m", memory_request="512Mi", cpu_limit="1", memory_limit="1Gi")
    )
    export_resources: Resources = field(
        default_factory=lambda: Resources(
            cpu_request="100m", memory_request="256Mi", cpu_limit="500m", memory_limit="512Mi"
        )
    )
    # Room under /tmp for a dump before upload; a bigger database needs a bigger bound.
    dump_scratch: str = "20Gi"

    def __post_init__(self) -> None:
        secret_keys = sorted(k for k in self.outputs if outputs_key_is_secret(k))
        if secret_keys:
            raise SettingsError(
                f"backup job outputs {secret_keys} may hold secret values; expected only non-secret outputs "
                "(credentials come from the Kubernetes Secret or workload identity)"
            )
        missing = sorted(set(required_output_keys()) - set(self.outputs))
        if missing:
            raise SettingsError(
                f"backup job outputs lack {missing}; expected every key drtopo.outputs.StackOutputs requires"
            )


def required_output_keys() -> tuple[str, ...]:
    """The outputs.json keys `scripts.backup` cannot run without (the required fields of StackOutputs)."""
    return tuple(sorted(REQUIRED_KEYS))


class BackupJobs(pulumi.ComponentResource):
    """Daily full dump with verification, configuration export, and the least-privilege identities they run as."""

    def __init__(self, name: str, args: BackupJobsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:backup:BackupJobs", name, None, opts)
        self._settings = settings = args.settings
        self._namespace = namespace = settings.kubernetes.namespace
        child = pulumi.ResourceOptions(parent=self)
        outputs_json = pulumi.Output.all(**dict(args.outputs)).apply(
            lambda values: json.dumps(values, indent=2, sort_keys=True)
        )
        self.config_map = ConfigMap(
            f"{name}-config",
            metadata={"name": CONFIG_MAP, "namespace": namespace, "labels": labels(CONFIG_MAP, "backup")},
            data={OUTPUTS_FILE: outputs_json, stack_file(settings.stack).name: stack_config_yaml(settings)},
            opts=child,
        )
        self.roles = self._workload_roles(name, args) if settings.kubernetes.oidc_issuer else {}
        self.dump_account = self._service_account(name, DUMP_JOB, kubernetes_api=False)
        self.export_account = self._service_account(name, EXPORT_JOB, kubernetes_api=True)
        self.export_role = Role(
            f"{name}-{EXPORT_JOB}-role",
            metadata={"name": EXPORT_JOB, "namespace": namespace, "labels": labels(EXPORT_JOB, "backup")},
            rules=export_rules(namespace),
            opts=child,
        )
        self.export_binding = RoleBinding(
            f"{name}-{EXPORT_JOB}-binding",
            metadata={"name": EXPORT_JOB, "namespace": namespace, "labels": labels(EXPORT_JOB, "backup")},
            role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": EXPORT_JOB},
            subjects=[{"kind": "ServiceAccount", "name": EXPORT_JOB, "namespace": namespace}],
            opts=child,
        )
        # The other namespaces the export covers (kubernetes.exportNamespaces: monitoring): the same read-only
        # rights there, granted to the export's account of the service's namespace.
        for other in settings.kubernetes.export_namespaces:
            meta = {"name": f"drtopo-{EXPORT_JOB}", "namespace": other, "labels": labels(EXPORT_JOB, "backup")}
            Role(f"{name}-{EXPORT_JOB}-role-{other}", metadata=meta, rules=export_rules(other), opts=child)
            RoleBinding(
                f"{name}-{EXPORT_JOB}-binding-{other}",
                metadata=meta,
                role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
                subjects=[{"kind": "ServiceAccount", "name": EXPORT_JOB, "namespace": namespace}],
                opts=child,
            )
        dump = self._container("dump", backup_command(settings, "run"), args.dump_resources)
        verify = self._container("verify", backup_command(settings, "verify", "--latest"), args.dump_resources)
        # The dump runs first (an init container), the verification only after it succeeded, in the same pod.
        self.dump_job = self._cron_job(
            name,
            DUMP_JOB,
            schedule=settings.kubernetes.dump_schedule,
            limits=args.dump_limits,
            pod={"init_containers": [dump], "containers": [verify]},
            scratch=args.dump_scratch,
            # The primary's dumps replicate to the peer's bucket; the standby dumps once it is promoted.
            suspend=not settings.is_primary,
            depends_on=[self.dump_account],
        )
        export = self._container("export", backup_command(settings, "config"), args.export_resources)
        self.export_job = self._cron_job(
            name,
            EXPORT_JOB,
            schedule=settings.kubernetes.resource_export_schedule,
            limits=args.export_limits,
            pod={"containers": [export]},
            scratch="1Gi",
            suspend=False,
            depends_on=[self.export_account, self.export_binding],
        )
        # Restore testing on a schedule, as the dump's own account (the database, the dump bucket): a random dump of
        # the last 30 days restored into a scratch database and checked; the result lands beside the dumps.
        restore_test = self._container(
            RESTORE_TEST_JOB, backup_command(settings, "restore-test", "--random"), args.dump_resources
        )
        self.restore_test_job = self._cron_job(
            name,
            RESTORE_TEST_JOB,
            schedule=settings.kubernetes.restore_test_schedule,
            limits=args.dump_limits,
            pod={"containers": [restore_test]},
            scratch=args.dump_scratch,
            suspend=not settings.is_primary,
            depends_on=[self.dump_account],
            service_account=DUMP_JOB,
        )
        self.register_outputs(
            {
                "namespace": namespace,
                "dumpJob": DUMP_JOB,
                "dumpSchedule": settings.kubernetes.dump_schedule,
                "dumpSuspended": not settings.is_primary,
                "exportJob": EXPORT_JOB,
                "exportSchedule": settings.kubernetes.resource_export_schedule,
                "restoreTestJob": RESTORE_TEST_JOB,
                "restoreTestSchedule": settings.kubernetes.restore_test_schedule,
                "configMap": CONFIG_MAP,
                "roleArns": {job: role.arn for job, role in self.roles.items()},
            }
        )

    def _workload_roles(self, name: str, args: BackupJobsArgs) -> dict[str, WorkloadRole]:
        """One IRSA role per job, each allowed only what its job does, in this stack's region."""
        settings = self._settings
        issuer = str(settings.kubernetes.oidc_issuer)
        region = settings.region
        account = get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        # The master secret of the database this stack's jobs dump: its own as primary, else the peer's replica here.
        source_secret = naming.db_secret_name(region if settings.is_primary else settings.peer_region)
        outputs = args.outputs
        dump = pulumi.Output.all(account, outputs["dumpBucket"], outputs["kmsKeyArn"], outputs["dbKmsKeyArn"]).apply(
            lambda v: dump_policy(region, v[1], v[2], secret_arn(region, v[0], source_secret), v[3])
        )
        export = pulumi.Output.all(outputs["configBucket"], outputs["kmsKeyArn"]).apply(
            lambda v: export_policy(region, v[0], naming.config_prefix(settings.stack), v[1])
        )
        return {
            job: WorkloadRole(
                f"{name}-{job}-role",
                WorkloadRoleArgs(
                    role_name=f"drtopo-{region}-{job}",
                    account_id=account,
                    issuer=issuer,
                    namespace=self._namespace,
                    service_account=job,
                    policy=policy,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            for job, policy in ((DUMP_JOB, dump), (EXPORT_JOB, export))
        }

    def _service_account(self, name: str, job: str, *, kubernetes_api: bool) -> ServiceAccount:
        role = self.roles.get(job)
        role_arn = role.arn if role is not None else self._settings.kubernetes.workload_role_arn
        return ServiceAccount(
            f"{name}-{job}-sa",
            metadata={
                "name": job,
                "namespace": self._namespace,
                "labels": labels(job, "backup"),
                "annotations": {WORKLOAD_ROLE_ANNOTATION: role_arn} if role_arn else {},
            },
            automount_service_account_token=kubernetes_api,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _container(self, name: str, command: list[str], resources: Resources) -> dict[str, Any]:
        settings = self._settings
        kubernetes = settings.kubernetes
        env = job_env(settings, CONFIG_DIR)
        return {
            "name": name,
            "image": kubernetes.backup_image,
            "image_pull_policy": "IfNotPresent",
            "command": command,
            "env": env,
            "resources": resources.spec(),
            "security_context": container_security(BACKUP_UID),
            "volume_mounts": [
                {"name": "drtopo", "mount_path": CONFIG_DIR, "read_only": True},
                {"name": "tmp", "mount_path": "/tmp"},
            ],
        }

    def _cron_job(
        self,
        name: str,
        job: str,
        *,
        schedule: str,
        limits: JobLimits,
        pod: dict[str, Any],
        scratch: str,
        suspend: bool,
        depends_on: list[pulumi.Resource],
        service_account: str | None = None,
    ) -> CronJob:
        job_labels = labels(job, "backup")
        return CronJob(
            f"{name}-{job}",
            metadata={"name": job, "namespace": self._namespace, "labels": job_labels},
            spec={
                "schedule": schedule,
                "time_zone": "Etc/UTC",
                "concurrency_policy": "Forbid",
                "suspend": suspend,
                "starting_deadline_seconds": limits.starting_deadline_seconds,
                "successful_jobs_history_limit": limits.successful_history,
                "failed_jobs_history_limit": limits.failed_history,
                "job_template": {
                    "metadata": {"labels": job_labels},
                    "spec": {
                        "backoff_limit": limits.backoff_limit,
                        "active_deadline_seconds": limits.active_deadline_seconds,
                        "template": {
                            "metadata": {"labels": job_labels},
                            "spec": {
                                "service_account_name": service_account or job,
                                # Failed pods stay for their logs; the Job retries up to backoff_limit times.
                                "restart_policy": "Never",
                                "security_context": pod_security(BACKUP_UID),
                                "volumes": [
                                    {"name": "drtopo", "config_map": {"name": CONFIG_MAP}},
                                    scratch_volume("tmp", scratch),
                                ],
                                **pod,
                            },
                        },
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.config_map, *depends_on]),
        )
