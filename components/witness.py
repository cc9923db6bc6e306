"""The lease's witness store: one bucket in `drtopo:fencing.witnessRegion`, a region neither stack runs in, so that
losing any one region leaves two of the lease's three stores (drtopo/fencing/store.py).

Declared by one stack of the pair only (`fencing.witnessStack`, whatever its role: a bucket that followed the primary
role would be deleted by one stack and created again by the other at every failover). Every resource sits in the
witness region through pulumi-aws 7's per-resource `region` (as components/kms.py places keys), so the stack's own
provider serves it. The bucket is encrypted with its own key in the witness region, versioned (S3 conditional
writes, `If-Match` on the ETag, keep every version the epoch passed through), private, TLS-only and protected; it
is not replicated: a copy of an older epoch landing on a newer one would make the epoch go back. Noncurrent versions
expire after the daily retention window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
from pulumi_aws import s3

from components.kms import EncryptionKey, EncryptionKeyArgs
from components.lifecycle import ABORT_MULTIPART_DAYS
from drtopo.fencing.store import WITNESS_PURPOSE, witness_bucket, witness_key_alias
from drtopo.settings import PROJECT, FencingMode, Settings, SettingsError


def witness_bucket_policy(bucket: str) -> str:
    """Deny any request over plain HTTP and any upload that does not ask for SSE-KMS (the store asks for it)."""
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


@dataclass(frozen=True)
class LeaseWitnessArgs:
    settings: Settings

    def __post_init__(self) -> None:
        fencing = self.settings.fencing
        if fencing.mode is not FencingMode.LEASE or fencing.witness_region is None:
            raise SettingsError(
                f"{PROJECT}:fencing.mode is {fencing.mode.value!r} for {self.settings.stack}; expected 'lease' with "
                "a witnessRegion to declare the witness store"
            )


class LeaseWitness(pulumi.ComponentResource):
    """The witness bucket and its key, both in the witness region."""

    bucket: s3.Bucket
    bucket_name: pulumi.Output[str]
    key_arn: pulumi.Output[str]
    region: str

    def __init__(self, name: str, args: LeaseWitnessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:fencing:LeaseWitness", name, None, opts)
        settings = args.settings
        region = str(settings.fencing.witness_region)
        physical = witness_bucket(PROJECT, region)
        key = EncryptionKey(
            f"{name}-key",
            EncryptionKeyArgs(
                description=f"drtopo lease witness in {region}",
                alias=witness_key_alias(region),
                region=region,
                purpose=WITNESS_PURPOSE,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.bucket = bucket = s3.Bucket(
            name,
            bucket=physical,
            region=region,
            tags={"drtopo:purpose": WITNESS_PURPOSE, "drtopo:stack": settings.stack},
            opts=pulumi.ResourceOptions(parent=self, protect=True),
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
        # The guard rewrites the lease every renew interval: each rewrite leaves a noncurrent version, kept for the
        # daily retention window (the epochs' recent history) and then expired, never piling up.
        s3.BucketLifecycleConfiguration(
            name,
            bucket=bucket.id,
            region=region,
            rules=[
                {
                    "id": "lease-history",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {"noncurrent_days": settings.retention.daily.days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
                }
            ],
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]),
        )
        s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=bucket.id,
            region=region,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": key.arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        s3.BucketPolicy(name, bucket=bucket.id, region=region, policy=witness_bucket_policy(physical), opts=child)
        self.bucket_name = bucket.bucket
        self.key_arn = key.arn
        self.region = region
        self.register_outputs({"bucket": bucket.bucket, "region": region, "keyArn": key.arn})
