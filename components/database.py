"""The stack's PostgreSQL on RDS: a Multi-AZ primary, or (as standby) a cross-region read replica of the peer's.

Promotion is in place: both roles declare the same instance, and dropping `replicate_source_db` is what the
provider turns into PromoteReadReplica; `scripts.promote` promotes first, so `pulumi up --refresh` finds nothing
left to promote. RDS cannot demote an instance (adding `replicate_source_db` to a standalone one is refused), so a
stack that turns standby declares its next `drtopo:database.generation`: a new instance (`database-g<n>`,
`exception-collector-<region>-g<n>`) replicating the peer with this region's database key, which `dbKmsKeyArn`
exports. The instance it held is listed in `retiredGenerations`: still declared as the standalone it is, protected,
deletion protection on, snapshotted once (`<identifier>-retired`). Every instance has `retain_on_delete`, so none
is ever deleted by Pulumi: an operator releases a retired one with `pulumi state unprotect <urn>` and by dropping it
from `retiredGenerations`, and the next `pulumi up` only forgets it. `dbName` and `username` are create-only
(ForceNew) and ignored after creation. Provider rules relied on: tests/unit/provider_rules.py (with sources).

Automated backups are copied to the peer region while primary. A CloudWatch alarm fires when replica lag nears the
RPO.

Credentials that survive the primary region: the master password lives in this stack's own Secrets Manager secret
(`drtopo/<region>/database/master`, the database key), replicated to the peer region (under the peer's database
key), so the standby region reads it while the primary region is gone. RDS's own managed secret
(`manage_master_user_password`) cannot serve here: RDS does not create a read replica of a source whose master
password Secrets Manager manages (RDS User Guide, "Limitations for Secrets Manager integration with Amazon RDS"),
and a managed secret is RDS's, not replicated. The password is drawn by Secrets Manager (GetRandomPassword) at
deploy time and handed over write-only (`password_wo`, `secret_string_wo`): it is in no file, config or state.
A standby's database is a replica and inherits the primary's password; its jobs read the primary's secret through
the replica in their own region (`dbPasswordSecretArn` then names it by name).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
from pulumi_aws import cloudwatch, rds, secretsmanager

from components.alerts import AlertTopic, AlertTopicArgs
from components.kms import EncryptionKey, EncryptionKeyArgs
from drtopo import naming
from drtopo.database.instance import instance_inputs, logical_name
from drtopo.database.parameters import parameter_family, parameters
from drtopo.settings import Settings, SettingsError

# The primary stack's output holding its database ARN, read through a StackReference by the standby.
PRIMARY_ARN_OUTPUT = "dbArn"
LAG_PERIOD_SECONDS = 60
LAG_EVALUATION_PERIODS = 3
# Inputs RDS takes at creation only (terraform-provider-aws: ForceNew): ignored afterwards, so a promoted replica
# whose refreshed state lacks them is never replaced for it.
CREATE_ONLY_INPUTS = ("dbName", "username")
# The tag of the one key a stack keeps outside its region (policies/rules/regions.py allows exactly this one).
RDS_BACKUP_COPIES_PURPOSE = "rds-backup-copies"
# Bumped to set a new master password (write-only inputs are sent only when their version changes).
MASTER_PASSWORD_VERSION = 1
MASTER_PASSWORD_LENGTH = 40
# Secrets Manager waits this long before deleting a secret: the maximum, so a mistaken deletion can be undone.
SECRET_RECOVERY_DAYS = 30


def master_secret_json(username: str, password: str, port: int) -> str:
    """What the master secret holds: the keys AWS's database secrets use (username, password, engine, port)."""
    return json.dumps({"engine": "postgres", "username": username, "password": password, "port": port})


def replication_source(settings: Settings, opts: pulumi.ResourceOptions) -> pulumi.Input[str]:
    """The primary's ARN: explicit `replicationSourceArn`, else the `dbArn` output of `primaryStackReference`."""
    if settings.replication_source_arn:
        return settings.replication_source_arn
    if settings.primary_stack_reference:
        reference = pulumi.StackReference(settings.primary_stack_reference, opts=opts)
        return reference.require_output(PRIMARY_ARN_OUTPUT)
    raise SettingsError(
        f"role {settings.role.value!r} has no primary reference; expected primaryStackReference or replicationSourceArn"
    )


@dataclass(frozen=True)
class DatabaseArgs:
    settings: Settings


class Database(pulumi.ComponentResource):
    """Key, parameter group, instance, backup copies to the peer region, replica-lag alarm."""

    instance: rds.Instance
    key_arn: pulumi.Output[str]
    password_secret_arn: pulumi.Output[str | None]
    secret_arn: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:database:Database", name, None, opts)
        settings = args.settings
        db = settings.database
        child = pulumi.ResourceOptions(parent=self)
        region, peer = settings.region, settings.peer_region
        key = EncryptionKey(
            f"{name}-key",
            EncryptionKeyArgs(description=f"drtopo database in {region}", alias=f"drtopo-{region}-database"),
            child,
        )
        # Declared in both roles: a protected key cannot disappear when the role changes.
        copies_key = EncryptionKey(
            f"{name}-backup-copies-key",
            EncryptionKeyArgs(
                description=f"drtopo copies of {region} database backups, kept in {peer}",
                alias=f"drtopo-{region}-database-backup-copies",
                region=peer,
                # RDS encrypts backup copies only with a key (ARN) in the destination region.
                purpose=RDS_BACKUP_COPIES_PURPOSE,
            ),
            child,
        )
        params = rds.ParameterGroup(
            f"{name}-params",
            # Named by region and family: a major upgrade brings a new group beside the old one.
            name=naming.parameter_group_name(settings),
            family=parameter_family(db.engine_version),
            description=f"drtopo PostgreSQL {db.engine_version}: TLS only, archive every {db.archive_timeout_seconds}s",
            parameters=parameters(db),
            opts=child,
        )
        secret = secretsmanager.Secret(
            f"{name}-master-secret",
            name=naming.db_secret_name(region),
            description=f"drtopo master credentials of the database in {region}, replicated to {peer}",
            kms_key_id=key.arn,
            # The replica in the peer region is encrypted with the peer's own database key (by alias there).
            replicas=[{"region": peer, "kms_key_id": f"alias/drtopo-{peer}-database"}],
            recovery_window_in_days=SECRET_RECOVERY_DAYS,
            tags={"drtopo:stack": settings.stack},
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        password = pulumi.Output.secret(
            secretsmanager.get_random_password_output(
                password_length=MASTER_PASSWORD_LENGTH,
                exclude_punctuation=True,
                opts=pulumi.InvokeOptions(parent=self),
            ).random_password
        )
        standalone: dict[str, object] = {
            "db_name": db.name,
            "username": db.username,
            "password_wo": password,
            "password_wo_version": MASTER_PASSWORD_VERSION,
        }
        identifier = naming.db_identifier(settings)
        # A replica inherits database name, user and password from its source: the provider refuses db_name and
        # username beside replicate_source_db (ConflictsWith), so only a standalone instance declares them.
        role_inputs = (
            standalone if settings.is_primary else {"replicate_source_db": replication_source(settings, child)}
        )
        self.instance = self._instance(name, db.generation, settings, key.arn, params.name, role_inputs)
        for generation in db.retired_generations:
            # A former primary (RDS cannot demote it): declared as it stands, so it neither changes nor leaves
            # state, and snapshotted once; `pulumi state unprotect` then dropping it from retiredGenerations lets
            # it leave state, and retain_on_delete keeps it (deletion protection on) in AWS.
            retired_name = logical_name(generation, name)
            retired_identifier = naming.db_identifier(settings, generation)
            retired = self._instance(name, generation, settings, key.arn, params.name, standalone)
            rds.Snapshot(
                f"{retired_name}-retired",
                db_instance_identifier=retired.identifier,
                db_snapshot_identifier=f"{retired_identifier}-retired",
                tags={"drtopo:stack": settings.stack},
                opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
            )
        if settings.is_primary:
            # The password the standalone instance is given, written to the secret in the same update; kept when
            # the stack turns standby (the version stays in AWS, retain_on_delete).
            secretsmanager.SecretVersion(
                f"{name}-master-secret",
                secret_id=secret.id,
                secret_string_wo=pulumi.Output.secret(
                    password.apply(lambda value: master_secret_json(db.username, value, db.port))
                ),
                secret_string_wo_version=MASTER_PASSWORD_VERSION,
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, depends_on=[self.instance]),
            )
        if settings.is_primary:
            # Parented to the component, not the protected instance, so a switch to standby may remove it.
            rds.InstanceAutomatedBackupsReplication(
                f"{name}-backup-copies",
                source_db_instance_arn=self.instance.arn,
                kms_key_id=copies_key.arn,
                retention_period=db.backup_retention_days,
                region=peer,
                opts=child,
            )
        alerts = AlertTopic(
            f"{name}-alerts",
            AlertTopicArgs(
                description=f"drtopo database alarms in {region}",
                alias=f"drtopo-{region}-database-alerts",
                subscriptions=settings.notifications.alerts,
            ),
            child,
        )
        cloudwatch.MetricAlarm(
            f"{name}-replica-lag",
            alarm_description=(
                f"Replica lag of {identifier} above {db.replica_lag_alarm_seconds}s; the region-failure RPO is "
                f"{settings.objectives.region_failure.rpo_seconds:g}s"
            ),
            namespace="AWS/RDS",
            metric_name="ReplicaLag",
            dimensions={"DBInstanceIdentifier": self.instance.identifier},
            statistic="Maximum",
            period=LAG_PERIOD_SECONDS,
            evaluation_periods=LAG_EVALUATION_PERIODS,
            threshold=db.replica_lag_alarm_seconds,
            comparison_operator="GreaterThanOrEqualToThreshold",
            # A replica that stops reporting lag is not replicating; a primary never reports it.
            treat_missing_data="notBreaching" if settings.is_primary else "breaching",
            alarm_actions=[alerts.topic_arn],
            ok_actions=[alerts.topic_arn],
            opts=child,
        )
        self.key_arn = key.arn
        # The primary's own secret; on a standby, the replica of the peer's secret in this region (by name: its ARN's
        # random suffix is the peer's). Either way the credentials are read in this stack's region.
        self.secret_arn = secret.arn
        # (Secrets Manager's SecretId takes an ARN or a name; a name is looked up in the client's region.)
        self.password_secret_arn = (
            secret.arn if settings.is_primary else pulumi.Output.from_input(naming.db_secret_name(peer))
        )
        self.register_outputs(
            {
                "identifier": self.instance.identifier,
                "arn": self.instance.arn,
                "address": self.instance.address,
                "port": self.instance.port,
                "keyArn": key.arn,
                "alertTopicArn": alerts.topic_arn,
                "passwordSecretArn": self.password_secret_arn,
                "masterSecretArn": secret.arn,
            }
        )

    def _instance(
        self,
        name: str,
        generation: int,
        settings: Settings,
        kms_key_id: pulumi.Input[str],
        parameter_group_name: pulumi.Input[str],
        role_inputs: dict[str, object],
    ) -> rds.Instance:
        """One RDS instance: protected, never deleted by Pulumi (retain_on_delete), its create-only name and user
        ignored after creation (a promoted replica's state may not echo them; a change would force a new one).
        Its arguments are `drtopo.database.instance.instance_inputs`, the ones a script uses when it must create
        the replica first."""
        return rds.Instance(
            logical_name(generation, name),
            opts=pulumi.ResourceOptions(
                parent=self, protect=True, retain_on_delete=True, ignore_changes=list(CREATE_ONLY_INPUTS)
            ),
            **instance_inputs(settings, generation, kms_key_id, parameter_group_name),
            **role_inputs,
        )
