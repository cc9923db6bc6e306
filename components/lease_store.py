"""A store of the primary lease (drtopo/fencing/store.py): a bucket written only by the lease's conditional writes.

Each stack declares its own lease bucket in its region (`LeaseStore`, with fencing.mode `lease`); the witness stack
also declares the witness bucket (components/witness.py). Both are built by `declare_lease_bucket`: versioned (S3
conditional writes keep every version the epoch passed through), private, TLS-only, SSE-KMS only, protected, their
noncurrent versions expired after the daily retention window, and never replicated. The configuration buckets
replicate into each other, and S3 replication is asynchronous with no promise of how a replica lands among the
versions written directly in its destination: an older epoch's replica could become current over a newer epoch
and make the epoch go back. A lease store therefore has no replication configuration and is no replication's
destination (policy rule `fencing-lease-stores-unreplicated`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_aws import s3

from components.lifecycle import ABORT_MULTIPART_DAYS
from components.storage import bucket_policy
from drtopo.fencing.store import LEASE_PURPOSE, lease_bucket
from drtopo.settings import PROJECT, FencingMode, Settings, SettingsError

LEASE_HISTORY_RULE = "lease-history"


def lease_lifecycle_rules(noncurrent_days: int) -> list[dict[str, Any]]:
    """The guard rewrites the lease every renew interval: each rewrite leaves a noncurrent version, kept for the
    daily retention window (the epochs' recent history) and then expired. The current lease never expires."""
    return [
        {
            "id": LEASE_HISTORY_RULE,
            "status": "Enabled",
            "filter": {"prefix": ""},
            "noncurrent_version_expiration": {"noncurrent_days": noncurrent_days},
            "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
        }
    ]


def declare_lease_bucket(
    name: str,
    parent: pulumi.Resource,
    physical: str,
    region: str,
    key_arn: pulumi.Input[str],
    tags: dict[str, str],
    noncurrent_days: int,
) -> s3.Bucket:
    """The bucket `physical` in `region` and its companions (all named `name`), under `parent`; no replication."""
    bucket = s3.Bucket(
        name,
        bucket=physical,
        region=region,
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent, protect=True),
    )
    child = pulumi.ResourceOptions(parent=bucket)
    s3.BucketPublicAccessBlock(
        name,
        bucket=bucket.id,
        region=region,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=child,
    )
    versioning = s3.BucketVersioning(
        name, bucket=bucket.id, region=region, versioning_configuration={"status": "Enabled"}, opts=child
    )
    s3.BucketLifecycleConfiguration(
        name,
        bucket=bucket.id,
        region=region,
        rules=lease_lifecycle_rules(noncurrent_days),
        opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]),
    )
    s3.BucketServerSideEncryptionConfiguration(
        name,
        bucket=bucket.id,
        region=region,
        rules=[
            {
                "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": key_arn},
                "bucket_key_enabled": True,
            }
        ],
        opts=child,
    )
    s3.BucketPolicy(name, bucket=bucket.id, region=region, policy=bucket_policy(physical), opts=child)
    return bucket


@dataclass(frozen=True)
class LeaseStoreArgs:
    """`key_arn` is this stack's backup key (BackupStorage's, exported as `kmsKeyArn`)."""

    settings: Settings
    key_arn: pulumi.Input[str]

    def __post_init__(self) -> None:
        fencing = self.settings.fencing
        if fencing.mode is not FencingMode.LEASE:
            raise SettingsError(
                f"{PROJECT}:fencing.mode is {fencing.mode.value!r} for {self.settings.stack}; expected 'lease' to "
                "declare the lease store"
            )


class LeaseStore(pulumi.ComponentResource):
    """This stack's lease bucket, in its own region, with the stack's backup key; declared whatever the role (a
    store that followed the role would be deleted and created again by every failover)."""

    bucket: s3.Bucket
    bucket_name: pulumi.Output[str]
    region: str

    def __init__(self, name: str, args: LeaseStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:fencing:LeaseStore", name, None, opts)
        settings = args.settings
        self.region = settings.region
        self.bucket = declare_lease_bucket(
            name,
            self,
            lease_bucket(PROJECT, settings.region),
            settings.region,
            args.key_arn,
            {"drtopo:purpose": LEASE_PURPOSE, "drtopo:stack": settings.stack},
            settings.retention.daily.days,
        )
        self.bucket_name = self.bucket.bucket
        self.register_outputs({"bucket": self.bucket.bucket, "region": settings.region})
