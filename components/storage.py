"""Backup storage: one S3 bucket per purpose (dumps, wal, config, audit), encrypted, versioned, private, TLS-only,
tiered by lifecycle rules, Object-Locked for audit data and replicated to the same-purpose bucket of the peer region.

Each stack replicates into its peer's buckets (named by `naming.bucket_name` for the peer region), so whichever
region survives holds both regions' backups. Replicas are encrypted with the peer's own backup key (the peer stack
declares it in its region; this stack names it by alias ARN, which S3's ReplicaKmsKeyID accepts): every key a stack
declares lives in its own region.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
from pulumi_aws import get_caller_identity_output, iam, s3

from components.kms import EncryptionKey, EncryptionKeyArgs
from components.lifecycle import lifecycle_rules
from drtopo import naming
from drtopo.settings import Settings

# S3 Replication Time Control has one service level: 99.99% of objects within 15 minutes.
REPLICATION_TIME_MINUTES = 15
AUDIT_PURPOSE = "audit"


def peer_bucket_name(settings: Settings, purpose: str) -> str:
    """The same-purpose bucket the peer stack creates in its region."""
    return naming.bucket_name(settings.model_copy(update={"region": settings.peer_region}), purpose)


def backup_key_alias(region: str) -> str:
    """The alias of the backup key the stack of `region` declares (without `alias/`)."""
    return f"drtopo-{region}-backups"


def peer_backup_key_alias_arn(settings: Settings, account_id: str) -> str:
    """The peer's backup key by alias ARN: S3 encrypts the replicas in the peer region with it."""
    return f"arn:aws:kms:{settings.peer_region}:{account_id}:alias/{backup_key_alias(settings.peer_region)}"


def bucket_policy(bucket: str) -> str:
    """Deny any request over plain HTTP and any upload that is not SSE-KMS encrypted."""
    arn = f"arn:aws:s3:::{bucket}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [arn, f"{arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                {
                    "Sid": "DenyUnencryptedUploads",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:PutObject",
                    "Resource": f"{arn}/*",
                    "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}},
                },
            ],
        }
    )


def replication_policy(settings: Settings, purposes: tuple[str, ...], source_key_arn: str, account_id: str) -> str:
    """Least privilege for S3 replication: read versions here, write replicas there, use exactly the two keys.

    The replica key is the peer's, known here by alias only: IAM matches a key by its key ARN, so the statement
    names the peer region's keys and narrows them to the one behind the alias (`kms:ResourceAliases`)."""
    sources = [f"arn:aws:s3:::{naming.bucket_name(settings, p)}" for p in purposes]
    targets = [f"arn:aws:s3:::{peer_bucket_name(settings, p)}" for p in purposes]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadReplicationConfiguration",
                    "Effect": "Allow",
                    "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
                    "Resource": sources,
                },
                {
                    "Sid": "ReadSourceVersions",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObjectVersionForReplication",
                        "s3:GetObjectVersionAcl",
                        "s3:GetObjectVersionTagging",
                        "s3:GetObjectRetention",
                        "s3:GetObjectLegalHold",
                    ],
                    "Resource": [f"{arn}/*" for arn in sources],
                },
                {
                    "Sid": "WriteReplicas",
                    "Effect": "Allow",
                    "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
                    "Resource": [f"{arn}/*" for arn in targets],
                },
                {
                    "Sid": "DecryptSources",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": source_key_arn,
                    "Condition": {"StringLike": {"kms:ViaService": f"s3.{settings.region}.amazonaws.com"}},
                },
                {
                    "Sid": "EncryptReplicas",
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                    "Resource": f"arn:aws:kms:{settings.peer_region}:{account_id}:key/*",
                    "Condition": {
                        "StringLike": {"kms:ViaService": f"s3.{settings.peer_region}.amazonaws.com"},
                        "ForAnyValue:StringEquals": {
                            "kms:ResourceAliases": f"alias/{backup_key_alias(settings.peer_region)}"
                        },
                    },
                },
            ],
        }
    )


ASSUME_ROLE_BY_S3 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


@dataclass(frozen=True)
class BackupStorageArgs:
    settings: Settings
    purposes: tuple[str, ...] = naming.BUCKET_PURPOSES


class BackupStorage(pulumi.ComponentResource):
    """The buckets, their key (this region) and the replication role; replicas use the peer's key."""

    buckets: dict[str, s3.Bucket]
    bucket_names: dict[str, pulumi.Output[str]]
    key_arn: pulumi.Output[str]
    replica_key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: BackupStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:storage:BackupStorage", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        key = EncryptionKey(
            f"{name}-key",
            EncryptionKeyArgs(
                description=f"drtopo backups in {settings.region}", alias=backup_key_alias(settings.region)
            ),
            child,
        )
        account_id = get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        replica_key_arn = account_id.apply(lambda account: peer_backup_key_alias_arn(settings, account))
        role = iam.Role(f"{name}-replication", assume_role_policy=ASSUME_ROLE_BY_S3, opts=child)
        iam.RolePolicy(
            f"{name}-replication",
            role=role.id,
            policy=pulumi.Output.all(key.arn, account_id).apply(
                lambda values: replication_policy(settings, args.purposes, values[0], values[1])
            ),
            opts=child,
        )
        self.buckets = {
            purpose: self._bucket(f"{name}-{purpose}", settings, purpose, key.arn, replica_key_arn, role.arn)
            for purpose in args.purposes
        }
        self.bucket_names = {purpose: bucket.bucket for purpose, bucket in self.buckets.items()}
        self.key_arn = key.arn
        self.replica_key_arn = replica_key_arn
        self.register_outputs(
            {
                "buckets": self.bucket_names,
                "keyArn": key.arn,
                "replicaKeyArn": replica_key_arn,
                "replicationRoleArn": role.arn,
            }
        )

    def _bucket(
        self,
        name: str,
        settings: Settings,
        purpose: str,
        key_arn: pulumi.Output[str],
        replica_key_arn: pulumi.Output[str],
        role_arn: pulumi.Output[str],
    ) -> s3.Bucket:
        physical = naming.bucket_name(settings, purpose)
        locked = purpose == AUDIT_PURPOSE
        bucket = s3.Bucket(
            name,
            bucket=physical,
            object_lock_enabled=locked,
            tags={"drtopo:purpose": purpose, "drtopo:stack": settings.stack},
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        child = pulumi.ResourceOptions(parent=bucket)
        s3.BucketPublicAccessBlock(
            name,
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        versioning = s3.BucketVersioning(
            name, bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
        )
        s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": key_arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        s3.BucketPolicy(name, bucket=bucket.id, policy=bucket_policy(physical), opts=child)
        s3.BucketLifecycleConfiguration(
            name,
            bucket=bucket.id,
            rules=lifecycle_rules(purpose, settings.retention),
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]),
        )
        if locked:
            s3.BucketObjectLockConfiguration(
                name,
                bucket=bucket.id,
                object_lock_enabled="Enabled",
                rule={"default_retention": {"mode": "COMPLIANCE", "years": settings.retention.audit_years}},
                opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]),
            )
        s3.BucketReplicationConfig(
            name,
            bucket=bucket.id,
            role=role_arn,
            rules=[
                {
                    "id": f"to-{settings.peer_region}",
                    "status": "Enabled",
                    "priority": 1,
                    "filter": {"prefix": ""},
                    "delete_marker_replication": {"status": "Enabled"},
                    "source_selection_criteria": {"sse_kms_encrypted_objects": {"status": "Enabled"}},
                    "destination": {
                        "bucket": f"arn:aws:s3:::{peer_bucket_name(settings, purpose)}",
                        "storage_class": "STANDARD",
                        "encryption_configuration": {"replica_kms_key_id": replica_key_arn},
                        "replication_time": {"status": "Enabled", "time": {"minutes": REPLICATION_TIME_MINUTES}},
                        "metrics": {
                            "status": "Enabled",
                            "event_threshold": {"minutes": REPLICATION_TIME_MINUTES},
                        },
                    },
                }
            ],
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]),
        )
        return bucket
