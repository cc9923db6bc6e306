"""The provider's and the Pulumi engine's rules that decide what `pulumi up` does to a resource, as pure functions.

A step is planned from the resource's state (the provider's attributes, refreshed or not), its new inputs and the
live object; the result is one of `STEPS`, or `Refused` with the error the real run would end on. Only the rules
the failover relies on are modelled, each with its source:

terraform-provider-aws `internal/service/rds/instance.go` (`aws_db_instance`, v5+ schema and
`resourceInstanceUpdate`; pulumi-aws wraps it):
- ForceNew (a change replaces the instance): availability_zone, backup_target, character_set_name,
  custom_iam_instance_profile, db_name, engine, kms_key_id, nchar_character_set_name, restore_to_point_in_time,
  snapshot_identifier, storage_encrypted, timezone, username. Not ForceNew: engine_version (an in-place upgrade),
  identifier (a rename since v5; ForceNew in v4), instance_class, backup_retention_period, parameter_group_name.
- db_name and username are ConflictsWith replicate_source_db: a replica declaring either fails validation.
- replicate_source_db is Optional, not Computed (leaving it out means "none"). When it changes to empty the update
  calls PromoteReadReplica (with the planned backup_retention_period and backup_window), then ModifyDBInstance for
  the other changes; when it changes to any other value it fails with "cannot elect new source database for
  replication" (RDS cannot demote an instance or re-point a replica).
- Read sets replicate_source_db from ReadReplicaSourceDBInstanceIdentifier: a refresh after an out-of-band
  promotion records "none", so the next update has nothing to promote.
- Create with replicate_source_db (`resourceInstanceCreate`): CreateDBInstanceReadReplica with identifier,
  instance_class, multi_az, port, kms_key_id (SourceRegion taken from the source ARN), storage_type,
  publicly_accessible, deletion_protection, copy_tags_to_snapshot, iam_database_authentication_enabled,
  enabled_cloudwatch_logs_exports, auto_minor_version_upgrade, tags (and AZ, subnet group, security groups, iops,
  monitoring, option group, performance insights, which we do not declare); then, where the new replica differs,
  ModifyDBInstance (ApplyImmediately) for backup_retention_period, backup_window, maintenance_window,
  ca_cert_identifier, max_allocated_storage and parameter_group_name (followed by a reboot); allocated_storage,
  engine and engine_version are inherited (engine_version allowed on a replica since hashicorp/terraform-provider-aws
  PR #30703, closing #24887). A cross-region replica's parameter group is sent at creation since PR #36080, which
  PostgreSQL refuses ("A parameter group can't be specified during Read Replica creation for the following DB
  engine: postgres", issue #38056), so PR #38227 sets it by the modify again. Modelled by
  `drtopo.database.instance.REPLICA_*`, which `scripts.failback` sends as such.
RDS API `CreateDBInstanceReadReplica` (docs.aws.amazon.com/AmazonRDS/latest/APIReference/
  API_CreateDBInstanceReadReplica.html): "RDS creates read replicas with backups disabled. All other attributes
  (including DB security groups and DB parameter groups) are inherited from the source"; a second create of an
  existing identifier fails (DBInstanceAlreadyExists), so a program declaring an instance a script made first fails
  until the state adopts it.
RDS API `PromoteReadReplica` (docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_PromoteReadReplica.html):
  DBInstanceIdentifier "must match the identifier of an existing read replica DB instance": promoting a standalone
  instance (state not refreshed after `scripts.promote`) is an error.
RDS `DeleteDBInstance` refuses an instance with deletion protection on (the provider's Delete surfaces it).
terraform-provider-aws `internal/service/route53/record.go` (`aws_route53_record`):
- ForceNew: name, zone_id; failover_routing_policy, records, ttl, health_check_id and set_identifier update in
  place (ChangeResourceRecordSets UPSERT); Read sets failover_routing_policy from the live record.
- Create sends CREATE unless allow_overwrite: a record that already exists fails creation.
Pulumi engine (pulumi.com/docs/iac/concepts/options/{protect,retainondelete,ignorechanges}):
- a protected resource is never deleted or replaced: the deployment fails;
- retain_on_delete: a delete (or the delete half of a replace) drops the resource from state and leaves it in the
  cloud;
- ignore_changes: an ignored input takes its old input value (or is dropped when the old inputs lack it) before the
  provider diffs.
- `pulumi import TYPE NAME ID --parent NAME=URN` (pulumi.com/docs/iac/cli/commands/pulumi_import,
  pulumi.com/docs/iac/adopting-pulumi/import): the existing resource enters the stack's state, protected by default,
  with the provider's Read of it as its inputs; the next `pulumi up` diffs the program's inputs against those (a
  ForceNew difference, e.g. another kms_key_id, replaces; a protected resource then refuses).
Data sources the program's live-state guard reads at preview (`components/live_state.py`; pulumi-aws 7 takes a
`region` on every invoke): `rds.get_instance` (`aws_db_instance` data source) returns `replicate_source_db`,
"Identifier of the source DB that this is a replica of" (pulumi-aws GetInstanceResult), empty for a standalone
instance, and fails for an identifier RDS does not have; `ssm.get_parameter` (`aws_ssm_parameter`) returns `value`
and fails for a missing parameter (SSM GetParameter: ParameterNotFound, as the emulator answers too). A failing
invoke raises in the program, which counts it as "not read", never as a contradiction (tests/unit/test_role_guard.py).
Any other type is modelled as: every input change updates in place (no ForceNew rule is claimed for it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RDS_INSTANCE = "aws:rds/instance:Instance"
ROUTE53_RECORD = "aws:route53/record:Record"
STEPS = ("same", "create", "update", "promote", "replace", "delete", "forget")


class Refused(RuntimeError):
    """`pulumi up` would stop on this resource: the message is the error the provider or the engine gives."""


@dataclass(frozen=True)
class TypeRules:
    """`force_new`: inputs whose change replaces; `conflicts`: pairs that may not both be set; `unset_when_absent`:
    Optional inputs that are not Computed, so leaving one out changes it to unset."""

    force_new: frozenset[str] = frozenset()
    conflicts: tuple[tuple[str, str], ...] = ()
    unset_when_absent: frozenset[str] = frozenset()


RULES: dict[str, TypeRules] = {
    RDS_INSTANCE: TypeRules(
        force_new=frozenset(
            {
                "availabilityZone",
                "backupTarget",
                "characterSetName",
                "customIamInstanceProfile",
                "dbName",
                "engine",
                "kmsKeyId",
                "ncharCharacterSetName",
                "restoreToPointInTime",
                "snapshotIdentifier",
                "storageEncrypted",
                "timezone",
                "username",
            }
        ),
        conflicts=(("dbName", "replicateSourceDb"), ("username", "replicateSourceDb")),
        unset_when_absent=frozenset({"replicateSourceDb", "manageMasterUserPassword", "deletionProtection"}),
    ),
    ROUTE53_RECORD: TypeRules(force_new=frozenset({"name", "zoneId"})),
}
OTHER = TypeRules()

# A read replica's creation, written out from the provider's and AWS's documentation (not from the code under test,
# `drtopo.database.instance.REPLICA_*`, which these tables judge): the `aws.rds.Instance` input (snake_case, as the
# program passes it) -> the RDS API parameter.
# - terraform-provider-aws `internal/service/rds/instance.go`, `resourceInstanceCreate`, the `replicate_source_db`
#   branch: these inputs go into CreateDBInstanceReadReplicaInput (storage_type, iam_database_authentication_enabled
#   and enabled_cloudwatch_logs_exports under the API's own names).
# - pulumi-aws `rds.Instance.replicate_source_db` (pulumi.com/registry/packages/aws/api-docs/rds/instance): "If
#   replicating an Instance in a different region, use the arn of the source DB. Note that if you are creating a
#   cross-region replica of an encrypted database you will also need to specify a kmsKeyId": hence the source ARN
#   and KmsKeyId (a key of the replica's own region) in the create call, and SourceRegion from that ARN.
REPLICA_CREATE_PARAMETERS: dict[str, str] = {
    "identifier": "DBInstanceIdentifier",
    "instance_class": "DBInstanceClass",
    "multi_az": "MultiAZ",
    "port": "Port",
    "kms_key_id": "KmsKeyId",
    "storage_type": "StorageType",
    "publicly_accessible": "PubliclyAccessible",
    "deletion_protection": "DeletionProtection",
    "copy_tags_to_snapshot": "CopyTagsToSnapshot",
    "iam_database_authentication_enabled": "EnableIAMDatabaseAuthentication",
    "enabled_cloudwatch_logs_exports": "EnableCloudwatchLogsExports",
    "auto_minor_version_upgrade": "AutoMinorVersionUpgrade",
    "tags": "Tags",
}
# Sent by ModifyDBInstance (ApplyImmediately) once the replica exists, same source: RDS API
# CreateDBInstanceReadReplica "creates read replicas with backups disabled" (so backup_retention_period needs the
# modify), the provider's create branch sets max_allocated_storage through the modify, and PostgreSQL refuses a
# parameter group at replica creation (hashicorp/terraform-provider-aws issue #38056, fixed by PR #38227 with the
# modify).
REPLICA_MODIFY_PARAMETERS: dict[str, str] = {
    "backup_retention_period": "BackupRetentionPeriod",
    "max_allocated_storage": "MaxAllocatedStorage",
    "parameter_group_name": "DBParameterGroupName",
}
# Inherited from the source, sent by neither call: engine and version, allocated storage, encryption (RDS User Guide,
# "Working with DB instance read replicas": a replica of an encrypted source is encrypted).
REPLICA_FROM_SOURCE: frozenset[str] = frozenset({"engine", "engine_version", "allocated_storage", "storage_encrypted"})
# The provider's own, read only when it deletes the instance; never sent to RDS.
PROVIDER_DELETE_ONLY: frozenset[str] = frozenset({"skip_final_snapshot", "final_snapshot_identifier"})


@dataclass
class StateEntry:
    """One resource in a stack's state: its last inputs, the provider's attributes and the engine's options."""

    type: str
    inputs: dict[str, Any]
    attrs: dict[str, Any]
    protect: bool
    retain_on_delete: bool
    ignore_changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Desired:
    """One resource as the program declares it."""

    type: str
    inputs: Mapping[str, Any]
    protect: bool
    retain_on_delete: bool
    ignore_changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Live:
    """What the provider would find in the cloud for an RDS instance (None for other types or when absent)."""

    is_replica: bool


@dataclass(frozen=True)
class Step:
    kind: str
    changed: tuple[str, ...] = field(default=())


def with_ignored(new: Mapping[str, Any], old_inputs: Mapping[str, Any], ignored: tuple[str, ...]) -> dict[str, Any]:
    """The inputs the provider diffs: each ignored input takes its old value, or is dropped when there was none."""
    inputs = dict(new)
    for key in ignored:
        if key in old_inputs:
            inputs[key] = old_inputs[key]
        else:
            inputs.pop(key, None)
    return inputs


def changed_inputs(type_token: str, attrs: Mapping[str, Any], inputs: Mapping[str, Any]) -> tuple[str, ...]:
    """Inputs whose value differs from the state; a Computed input left out keeps its state value."""
    rules = RULES.get(type_token, OTHER)
    changed = {k for k, v in inputs.items() if attrs.get(k) != v}
    changed |= {k for k in rules.unset_when_absent if k not in inputs and attrs.get(k) not in (None, False, "")}
    return tuple(sorted(changed))


def check_conflicts(type_token: str, urn: str, inputs: Mapping[str, Any]) -> None:
    for a, b in RULES.get(type_token, OTHER).conflicts:
        if inputs.get(a) and inputs.get(b):
            raise Refused(f"{urn}: {a} conflicts with {b} (the provider refuses both on one instance)")


def plan(urn: str, old: StateEntry | None, new: Desired | None, live: Live | None) -> Step:
    """The step `pulumi up` takes for one resource, or `Refused`."""
    if new is None:
        assert old is not None
        if old.protect:
            raise Refused(f"{urn}: cannot delete a protected resource (pulumi state unprotect it first)")
        return Step("forget" if old.retain_on_delete else "delete")
    check_conflicts(new.type, urn, new.inputs)
    if old is None:
        return Step("create")
    inputs = with_ignored(new.inputs, old.inputs, new.ignore_changes)
    changed = changed_inputs(new.type, old.attrs, inputs)
    if not changed:
        return Step("same")
    replacing = sorted(set(changed) & RULES.get(new.type, OTHER).force_new)
    if replacing:
        if old.protect:
            raise Refused(f"{urn}: {replacing} force a replacement of a protected resource")
        return Step("replace", tuple(replacing))
    if new.type == RDS_INSTANCE and "replicateSourceDb" in changed:
        if inputs.get("replicateSourceDb"):
            raise Refused(f"{urn}: cannot elect new source database for replication")
        if live is None or not live.is_replica:
            raise Refused(f"{urn}: PromoteReadReplica: the instance is not a read replica (state not refreshed)")
        return Step("promote", changed)
    return Step("update", changed)
