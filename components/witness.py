"""The lease's witness store: one bucket in `drtopo:fencing.witnessRegion`, a region neither stack runs in, so that
losing any one region leaves two of the lease's three stores (drtopo/fencing/store.py).

Declared by one stack of the pair only (`fencing.witnessStack`, whatever its role: a bucket that followed the primary
role would be deleted by one stack and created again by the other at every failover). Every resource sits in the
witness region through pulumi-aws 7's per-resource `region` (as components/kms.py places keys), so the stack's own
provider serves it. The bucket is encrypted with its own key in the witness region and otherwise built as each
stack's own lease bucket (components/lease_store.py): versioned, private, TLS-only, protected, noncurrent versions
expired after the daily retention window, and not replicated (a copy of an older epoch landing on a newer one would
make the epoch go back).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_aws import s3

from components.kms import EncryptionKey, EncryptionKeyArgs
from components.lease_store import declare_lease_bucket
from drtopo.fencing.store import WITNESS_PURPOSE, witness_bucket, witness_key_alias
from drtopo.settings import PROJECT, FencingMode, Settings, SettingsError


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
        # Built as each stack's lease bucket is (components/lease_store.py), with its own key in its own region.
        self.bucket = bucket = declare_lease_bucket(
            name,
            self,
            physical,
            region,
            key.arn,
            {"drtopo:purpose": WITNESS_PURPOSE, "drtopo:stack": settings.stack},
            settings.retention.daily.days,
        )
        self.bucket_name = bucket.bucket
        self.key_arn = key.arn
        self.region = region
        self.register_outputs({"bucket": bucket.bucket, "region": region, "keyArn": key.arn})
