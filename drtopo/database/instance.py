"""The arguments of a stack's RDS instance, one source for the program and for the script that acts before it.

`instance_inputs` is what `components/database.py` declares for a generation's instance (its `rds.Instance`
keyword arguments); `replica_requests` turns the same inputs into the two RDS calls terraform-provider-aws makes to
create a read replica: `CreateDBInstanceReadReplica` with the arguments it accepts, then `ModifyDBInstance` for
those it does not (tests/unit/provider_rules.py, with sources). `scripts.failback` creates a replica with these
calls, never with arguments of its own, and prints the `pulumi import` that lets the program adopt it
(`import_command`), so the state holds what the script made, with nothing to replace. Pure: no boto3, no Pulumi.
"""

from __future__ import annotations

from typing import Any

from drtopo import naming
from drtopo.settings import PROJECT, Settings

RDS_INSTANCE = "aws:rds/instance:Instance"
# The program's database component (components/topology.py declares one, named "database").
COMPONENT_TYPE = "drtopo:database:Database"
COMPONENT_NAME = "database"

# terraform-provider-aws `resourceInstanceCreate`, replicate_source_db branch: the arguments it passes to
# CreateDBInstanceReadReplica (Pulumi input -> API parameter).
REPLICA_CREATE = {
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
# ...and those it sets with ModifyDBInstance (ApplyImmediately) once the replica is available: RDS creates replicas
# with backups off, PostgreSQL refuses a parameter group at replica creation (the provider then reboots).
REPLICA_MODIFY = {
    "backup_retention_period": "BackupRetentionPeriod",
    "max_allocated_storage": "MaxAllocatedStorage",
    "parameter_group_name": "DBParameterGroupName",
}
# Inherited from the source (the provider sends none of them for a replica): engine and version, storage size,
# encryption (a replica of an encrypted source is encrypted, with KmsKeyId in its own region).
REPLICA_INHERITED = frozenset({"engine", "engine_version", "allocated_storage", "storage_encrypted"})
# The provider's own, used only when it deletes the instance: never sent to RDS.
PROVIDER_ONLY = frozenset({"skip_final_snapshot", "final_snapshot_identifier"})


def logical_name(generation: int, name: str = COMPONENT_NAME) -> str:
    """The logical name of a database generation: a new generation is a new resource, never a replacement."""
    return f"{name}-g{generation}" if generation else name


def instance_inputs(
    settings: Settings, generation: int, kms_key_id: Any, parameter_group_name: Any = None
) -> dict[str, Any]:
    """The `rds.Instance` arguments every role declares for `generation` (the role adds its own: a standalone's
    name, user and managed password, or a replica's source). `kms_key_id` is the stack's database key (the program
    passes the key's ARN, the script the `dbKmsKeyArn` output); `parameter_group_name` defaults to its name."""
    db = settings.database
    identifier = naming.db_identifier(settings, generation)
    return {
        "identifier": identifier,
        "engine": "postgres",
        "engine_version": db.engine_version,
        "instance_class": db.instance_class,
        "allocated_storage": db.allocated_storage_gb,
        "max_allocated_storage": db.max_allocated_storage_gb,
        "multi_az": db.multi_az,
        "port": db.port,
        "backup_retention_period": db.backup_retention_days,
        "parameter_group_name": parameter_group_name or naming.parameter_group_name(settings),
        "kms_key_id": kms_key_id,
        "storage_type": "gp3",
        "storage_encrypted": True,
        "publicly_accessible": False,
        "deletion_protection": True,
        "copy_tags_to_snapshot": True,
        "skip_final_snapshot": False,
        "final_snapshot_identifier": f"{identifier}-final",
        "iam_database_authentication_enabled": True,
        "enabled_cloudwatch_logs_exports": ["postgresql"],
        "auto_minor_version_upgrade": True,
        "tags": {"drtopo:stack": settings.stack},
    }


def _api_value(name: str, value: Any) -> Any:
    if name == "tags":
        return [{"Key": k, "Value": v} for k, v in value.items()]
    return value


def replica_requests(inputs: dict[str, Any], source_arn: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CreateDBInstanceReadReplica and ModifyDBInstance arguments the provider would send for a replica of
    `source_arn` declared with `inputs` (from `instance_inputs`)."""
    unknown = set(inputs) - set(REPLICA_CREATE) - set(REPLICA_MODIFY) - REPLICA_INHERITED - PROVIDER_ONLY
    if unknown:
        raise ValueError(f"inputs {sorted(unknown)} have no rule for a replica's creation; expected one in REPLICA_*")
    create = {api: _api_value(k, inputs[k]) for k, api in REPLICA_CREATE.items() if k in inputs}
    create["SourceDBInstanceIdentifier"] = source_arn
    source_region = source_arn.split(":")[3]
    if source_region:
        # Cross-region: boto3 presigns the request in the source region (the provider sets SourceRegion likewise).
        create["SourceRegion"] = source_region
    modify = {api: _api_value(k, inputs[k]) for k, api in REPLICA_MODIFY.items() if k in inputs}
    return create, {"DBInstanceIdentifier": inputs["identifier"], "ApplyImmediately": True, **modify}


def component_urn(settings: Settings) -> str:
    """The URN of the stack's database component (a child of the stack: the stack's own type is not in it)."""
    return f"urn:pulumi:{settings.stack}::{PROJECT}::{COMPONENT_TYPE}::{COMPONENT_NAME}"


def import_command(settings: Settings, generation: int | None = None) -> str:
    """The `pulumi import` that adopts the instance of `generation` (default: the current one) into the stack's
    state under the very name and parent the program declares it with (protected, as the program has it)."""
    generation = settings.database.generation if generation is None else generation
    return (
        f"pulumi import --stack {settings.stack} --yes --protect --generate-code=false "
        f"--parent {COMPONENT_NAME}={component_urn(settings)} "
        f"{RDS_INSTANCE} {logical_name(generation)} {naming.db_identifier(settings, generation)}"
    )
