"""The primary lease's guard in this stack's cluster: a Deployment of one replica running `python -m scripts.guard`
(drtopo/fencing/guard.py), with its own ServiceAccount, configuration and, with workload identity, its own IAM role.

The guard runs while the stack is primary (one replica) and is scaled to none while it is standby: a standby's guard
would fence a replica. An old primary whose region comes back after a failover still runs the guard its cluster
kept, which sees the newer epoch and fences it with no operator command; `pulumi up` of it as standby then scales
it down. `Recreate` never runs two guards of one stack at once.

It runs the backup image (the same scripts and settings as the backup jobs, components/backup_jobs.py) with its own
ConfigMap: the stack's outputs as the guard connects (`dbUser` is the guard's database role,
`drtopo:fencing.databaseRole`, its password from the Kubernetes Secret `drtopo:fencing.databaseSecret`, never from
config and never the master secret), the peer stack's outputs (read through `primaryStackReference`, which names
the peer in both stack files) and the stack file. Its IAM role (IRSA, components/identity.py's trust) may read and
write exactly the lease object in each of the three stores' buckets (each stack's unreplicated lease bucket and the
witness: components/lease_store.py, never a configuration bucket), list those three buckets (so a lease not yet
written reads as missing, not as refused) and use each store's key through S3 of that store's region: nothing else.
A heartbeat file the guard touches after every step is its liveness probe (drtopo/fencing/heartbeat.py).
While fenced the guard keeps the region's application at 0 replicas through its cluster's API with its service
account's token (mounted in its pod): its Role, in the application's namespace, allows `get` and `patch` on the
application's Deployment and that Deployment's scale, by name, and nothing else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi_aws import get_caller_identity_output
from pulumi_kubernetes.apps.v1 import Deployment
from pulumi_kubernetes.core.v1 import ConfigMap, ServiceAccount
from pulumi_kubernetes.rbac.v1 import Role, RoleBinding

from components.backup_jobs import (
    BACKUP_UID,
    CONFIG_DIR,
    OUTPUTS_FILE,
    RDS_CA_BUNDLE,
    WORKLOAD_ROLE_ANNOTATION,
    stack_config_yaml,
)
from components.identity import WorkloadRole, WorkloadRoleArgs
from components.pod_security import Resources, container_security, labels, pod_security, scratch_volume
from components.storage import backup_key_alias
from drtopo.application.deployment import application_namespace
from drtopo.fencing.lease import LEASE_KEY
from drtopo.fencing.store import GUARD_NAME, lease_bucket, witness_bucket, witness_key_alias
from drtopo.settings import PROJECT, FencingMode, Settings, SettingsError, stack_file

GUARD = GUARD_NAME
GUARD_COMPONENT = "fencing"
CONFIG_MAP = "drtopo-guard-config"
HEARTBEAT = "/tmp/guard.beat"
# The outputs keys the guard's copy leaves out: it never reads the master secret (its password is its own role's).
MASTER_SECRET_KEY = "dbPasswordSecretArn"


def guard_outputs(outputs: Mapping[str, Any], database_role: str) -> dict[str, Any]:
    """The stack's outputs as the guard connects: as its own database role, with no way to the master secret."""
    own = {key: value for key, value in outputs.items() if key != MASTER_SECRET_KEY}
    own["dbUser"] = database_role
    return own


def lease_buckets(settings: Settings) -> tuple[tuple[str, str, str], ...]:
    """(bucket, region, key alias) of the lease's three stores: this stack's lease bucket, the peer's (each with its
    stack's backup key), the witness (its own key)."""
    witness = str(settings.fencing.witness_region)
    return (
        (lease_bucket(PROJECT, settings.region), settings.region, backup_key_alias(settings.region)),
        (lease_bucket(PROJECT, settings.peer_region), settings.peer_region, backup_key_alias(settings.peer_region)),
        (witness_bucket(PROJECT, witness), witness, witness_key_alias(witness)),
    )


def lease_objects(settings: Settings) -> list[str]:
    """The ARNs of the lease object in each store: everything the guard may read or write."""
    return [f"arn:aws:s3:::{bucket}/{LEASE_KEY}" for bucket, _, _ in lease_buckets(settings)]


def guard_policy(settings: Settings, account_id: str) -> str:
    """Least privilege for the guard: the lease object of each store, listing those buckets only, and each store's
    key through S3 in that store's region (the keys named by alias, as the replication role names the peer's)."""
    stores = lease_buckets(settings)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadAndWriteTheLease",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": lease_objects(settings),
        },
        {
            # Without it S3 answers a lease not yet written with 403, which the guard must count as a failed store.
            "Sid": "ALeaseNotWrittenReadsAsMissing",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}" for bucket, _, _ in stores],
        },
    ]
    for index, (_, region, alias) in enumerate(stores):
        statements.append(
            {
                "Sid": f"StoreKeyThroughS3{index}",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": f"arn:aws:kms:{region}:{account_id}:key/*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{alias}"},
                },
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def application_rules(settings: Settings) -> list[dict[str, Any]]:
    """What the guard may do in the application's namespace: read and patch the application's Deployment (its
    replica count, by server-side apply) and its scale subresource, that one Deployment by name (pure)."""
    return [
        {
            "api_groups": ["apps"],
            "resources": ["deployments", "deployments/scale"],
            "verbs": ["get", "patch"],
            "resource_names": [settings.application.deployment],
        }
    ]


def guard_command(settings: Settings) -> list[str]:
    return [
        "python",
        "-m",
        "scripts.guard",
        "--stack",
        settings.stack,
        "--outputs",
        f"{CONFIG_DIR}/{OUTPUTS_FILE}",
        "--heartbeat",
        HEARTBEAT,
    ]


def liveness_probe(settings: Settings) -> dict[str, Any]:
    """Alive while a step was taken within one lease; checked every renew interval, after a lease to start in."""
    fencing = settings.fencing
    return {
        "exec": {"command": ["python", "-m", "scripts.guard_alive", HEARTBEAT, f"{fencing.lease_seconds:g}"]},
        "initial_delay_seconds": math.ceil(fencing.lease_seconds),
        "period_seconds": max(1, math.ceil(fencing.renew_seconds)),
        "timeout_seconds": 5,
        "failure_threshold": 2,
    }


@dataclass(frozen=True)
class LeaseGuardArgs:
    """`outputs` are this stack's exported outputs (as BackupJobsArgs takes them)."""

    settings: Settings
    outputs: Mapping[str, pulumi.Input[Any]]
    resources: Resources = field(
        default_factory=lambda: Resources(
            cpu_request="50m", memory_request="128Mi", cpu_limit="250m", memory_limit="256Mi"
        )
    )

    def __post_init__(self) -> None:
        settings = self.settings
        if settings.fencing.mode is not FencingMode.LEASE:
            raise SettingsError(
                f"{PROJECT}:fencing.mode is {settings.fencing.mode.value!r} for {settings.stack}; expected 'lease' "
                "to declare the guard"
            )


class LeaseGuard(pulumi.ComponentResource):
    """The guard's Deployment, ServiceAccount, ConfigMap, its Role on the application's Deployment and (with an
    OIDC issuer) IAM role."""

    deployment: Deployment

    def __init__(self, name: str, args: LeaseGuardArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:fencing:LeaseGuard", name, None, opts)
        self._settings = settings = args.settings
        namespace = settings.kubernetes.namespace
        child = pulumi.ResourceOptions(parent=self)
        guard_labels = labels(GUARD, GUARD_COMPONENT)
        # The peer's outputs, as the guard reads them beside its own (drtopo.outputs.peer_outputs).
        peer = pulumi.StackReference(str(settings.primary_stack_reference), opts=child)
        own_json = pulumi.Output.all(**dict(args.outputs)).apply(
            lambda values: json.dumps(guard_outputs(values, settings.fencing.database_role), indent=2, sort_keys=True)
        )
        peer_json = peer.outputs.apply(lambda values: json.dumps(dict(values), indent=2, sort_keys=True))
        self.config_map = ConfigMap(
            f"{name}-config",
            metadata={"name": CONFIG_MAP, "namespace": namespace, "labels": guard_labels},
            data={
                OUTPUTS_FILE: own_json,
                f"{settings.peer_stack}.json": peer_json,
                stack_file(settings.stack).name: stack_config_yaml(settings),
            },
            opts=child,
        )
        self.role = self._role(name) if settings.kubernetes.oidc_issuer else None
        role_arn = self.role.arn if self.role is not None else settings.kubernetes.workload_role_arn
        self.account = ServiceAccount(
            f"{name}-sa",
            metadata={
                "name": GUARD,
                "namespace": namespace,
                "labels": guard_labels,
                "annotations": {WORKLOAD_ROLE_ANNOTATION: role_arn} if role_arn else {},
            },
            # Its token is how the guard reaches its cluster's API: the application's scale, below, and nothing else.
            automount_service_account_token=True,
            opts=child,
        )
        app_namespace = application_namespace(settings)
        self.app_role = Role(
            f"{name}-app-role",
            metadata={"name": GUARD, "namespace": app_namespace, "labels": guard_labels},
            rules=application_rules(settings),
            opts=child,
        )
        self.app_binding = RoleBinding(
            f"{name}-app-binding",
            metadata={"name": GUARD, "namespace": app_namespace, "labels": guard_labels},
            role_ref={"api_group": "rbac.authorization.k8s.io", "kind": "Role", "name": GUARD},
            subjects=[{"kind": "ServiceAccount", "name": GUARD, "namespace": namespace}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.app_role, self.account]),
        )
        replicas = 1 if settings.is_primary else 0
        self.deployment = Deployment(
            name,
            metadata={"name": GUARD, "namespace": namespace, "labels": guard_labels},
            spec={
                "replicas": replicas,
                "strategy": {"type": "Recreate"},
                "selector": {"match_labels": guard_labels},
                "template": {
                    "metadata": {"labels": guard_labels},
                    "spec": {
                        "service_account_name": GUARD,
                        "security_context": pod_security(BACKUP_UID),
                        # SIGTERM stops the guard between steps; a step lasts at most about one renew interval.
                        "termination_grace_period_seconds": math.ceil(settings.fencing.renew_seconds) + 10,
                        "volumes": [
                            {"name": "drtopo", "config_map": {"name": CONFIG_MAP}},
                            scratch_volume("tmp", "64Mi"),
                        ],
                        "containers": [self._container(args.resources)],
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.config_map, self.account, self.app_binding]),
        )
        self.register_outputs(
            {
                "namespace": namespace,
                "deployment": GUARD,
                "replicas": replicas,
                "leaseObjects": lease_objects(settings),
                "roleArn": self.role.arn if self.role is not None else None,
                # What the guard keeps at 0 replicas while fenced.
                "application": f"{app_namespace}/deployment/{settings.application.deployment}",
            }
        )

    def _role(self, name: str) -> WorkloadRole:
        settings = self._settings
        account = get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        return WorkloadRole(
            f"{name}-role",
            WorkloadRoleArgs(
                role_name=f"drtopo-{settings.region}-lease-guard",
                account_id=account,
                issuer=str(settings.kubernetes.oidc_issuer),
                namespace=settings.kubernetes.namespace,
                service_account=GUARD,
                policy=account.apply(lambda account_id: guard_policy(settings, account_id)),
            ),
            pulumi.ResourceOptions(parent=self),
        )

    def _container(self, resources: Resources) -> dict[str, Any]:
        settings = self._settings
        return {
            "name": "guard",
            "image": settings.kubernetes.backup_image,
            "image_pull_policy": "IfNotPresent",
            "command": guard_command(settings),
            "env": [
                {"name": "DRTOPO_PROJECT_DIR", "value": CONFIG_DIR},
                {"name": "AWS_REGION", "value": settings.region},
                {"name": "AWS_DEFAULT_REGION", "value": settings.region},
                {"name": "HOME", "value": "/tmp"},
                {"name": "TMPDIR", "value": "/tmp"},
                {"name": "PGSSLMODE", "value": "verify-full"},
                {"name": "PGSSLROOTCERT", "value": RDS_CA_BUNDLE},
                {
                    "name": "PGPASSWORD",
                    "value_from": {"secret_key_ref": {"name": settings.fencing.database_secret, "key": "password"}},
                },
            ],
            "resources": resources.spec(),
            "security_context": container_security(BACKUP_UID),
            "liveness_probe": liveness_probe(settings),
            "volume_mounts": [
                {"name": "drtopo", "mount_path": CONFIG_DIR, "read_only": True},
                {"name": "tmp", "mount_path": "/tmp"},
            ],
        }
