"""RDS rules: encryption with a customer key, Multi-AZ, deletion protection, PITR retention, private, TLS enforced."""

from __future__ import annotations

from collections.abc import Iterator

from drtopo.settings import Settings
from policies import resource_types as types
from policies.limits import MIN_BACKUP_RETENTION_DAYS
from policies.model import Resource, Violation, as_list, number, truthy, violation
from policies.registry import resource_rule

RDS = (types.RDS_INSTANCE,)


def is_replica(instance: Resource) -> bool:
    return bool(instance.get("replicateSourceDb"))


@resource_rule("rds-encrypted", "RDS storage is encrypted with a customer-managed KMS key.", RDS)
def rds_encrypted(instance: Resource, settings: Settings) -> Iterator[Violation]:
    # A replica inherits encryption from its source but a cross-region one must name a key in its own region.
    if not is_replica(instance) and not truthy(instance.get("storageEncrypted")):
        yield violation(instance, "storageEncrypted", instance.get("storageEncrypted"), "true")
    if not instance.get("kmsKeyId"):
        yield violation(instance, "kmsKeyId", None, "a customer-managed KMS key ARN in the instance's region")


@resource_rule("rds-multi-az", "RDS instances run Multi-AZ so one zone's loss is not a failover.", RDS)
def rds_multi_az(instance: Resource, settings: Settings) -> Iterator[Violation]:
    if not truthy(instance.get("multiAz")):
        why = "" if settings.database.multi_az else "settings drtopo:database.multiAz is false"
        yield violation(instance, "multiAz", instance.get("multiAz"), "true", why)


@resource_rule("rds-deletion-protection", "RDS instances cannot be deleted by accident.", RDS)
def rds_deletion_protection(instance: Resource, settings: Settings) -> Iterator[Violation]:
    if not truthy(instance.get("deletionProtection")):
        yield violation(instance, "deletionProtection", instance.get("deletionProtection"), "true")


@resource_rule(
    "rds-backup-retention",
    f"A primary RDS instance keeps automated backups (PITR) for at least {MIN_BACKUP_RETENTION_DAYS} days.",
    RDS,
)
def rds_backup_retention(instance: Resource, settings: Settings) -> Iterator[Violation]:
    # A replica's retention is restored after promotion (AWS refuses both in one call), so only primaries count.
    if is_replica(instance):
        return
    days = number(instance.get("backupRetentionPeriod"))
    required = max(MIN_BACKUP_RETENTION_DAYS, settings.database.backup_retention_days)
    if days is None or days < required:
        yield violation(
            instance,
            "backupRetentionPeriod",
            instance.get("backupRetentionPeriod"),
            f">= {required} days",
            f"settings say {settings.database.backup_retention_days}, runbook floor {MIN_BACKUP_RETENTION_DAYS}",
        )


@resource_rule("rds-not-public", "RDS instances are not reachable from the internet.", RDS)
def rds_not_public(instance: Resource, settings: Settings) -> Iterator[Violation]:
    if truthy(instance.get("publiclyAccessible")):
        yield violation(instance, "publiclyAccessible", True, "false")


def parameters(group: Resource) -> dict[str, str]:
    return {str(p.get("name")): str(p.get("value")) for p in as_list(group.get("parameters")) if isinstance(p, dict)}


@resource_rule(
    "rds-force-ssl", "PostgreSQL parameter groups refuse connections without TLS.", (types.RDS_PARAMETER_GROUP,)
)
def rds_force_ssl(group: Resource, settings: Settings) -> Iterator[Violation]:
    value = parameters(group).get("rds.force_ssl")
    if value != "1":
        yield violation(group, "parameters[rds.force_ssl]", value, "'1'")
