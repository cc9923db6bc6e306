"""Where the lease lives: one object per store, a bucket in each of three regions, written only conditionally.

The stores are three unreplicated buckets: each stack's lease bucket in its own region (`lease_bucket` names it,
components/lease_store.py declares it) and the witness bucket in `drtopo:fencing.witnessRegion` (`witness_bucket`).
Never the configuration buckets: those replicate into each other, and S3 replication is asynchronous and makes no
promise about how a replica lands among the versions written directly in the destination bucket. A delayed replica
of an older epoch could become the current version over the peer's newer one, and with the witness unreachable at
that moment an old holder would renew over it: the epoch would go back. A store is written only by the lease's own
conditional writes, so in each store the epoch only grows. A store is given its S3 client, so a store whose region
is down is simply one whose client cannot connect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from drtopo import aws
from drtopo.backup.store import encryption_args
from drtopo.fencing.lease import LEASE_KEY, Lease
from drtopo.outputs import StackOutputs
from drtopo.settings import PROJECT, Settings

# S3 refuses a conditional write with 412 PreconditionFailed; two racing If-None-Match writes may get 409.
CONFLICT_CODES = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
MISSING_CODES = ("NoSuchKey", "404")


class Conflict(RuntimeError):
    """The store changed since it was read: another writer got there first."""


# The lease guard's Kubernetes name (Deployment, ServiceAccount: components/guard.py), as the policy pack finds it.
GUARD_NAME = "drtopo-guard"
# The tag of the witness bucket and key (components/witness.py): the policy pack allows that key in its region.
WITNESS_PURPOSE = "lease-witness"
# The tag of each stack's own lease bucket (components/lease_store.py).
LEASE_PURPOSE = "lease"


def lease_bucket(project: str, region: str) -> str:
    """The lease store of the stack in `region`: its own bucket there, encrypted with that stack's backup key."""
    return f"{project}-lease-{region}"


def witness_bucket(project: str, region: str) -> str:
    """The witness store's bucket of a stack pair: one per project, in the witness region."""
    return f"{project}-lease-witness-{region}"


def witness_key_alias(region: str) -> str:
    """The alias (without `alias/`) of the witness bucket's KMS key, in the witness region (components/witness.py)."""
    return f"drtopo-{region}-lease-witness"


def witness_encryption_args(region: str, account_id: str) -> dict[str, str]:
    """SSE-KMS with the witness key, by alias ARN (the bucket policy refuses an upload that does not ask for it)."""
    return {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": f"arn:aws:kms:{region}:{account_id}:alias/{witness_key_alias(region)}",
    }


@dataclass
class S3LeaseStore:
    """The lease object in one bucket. `read` gives the record and its ETag; `write` replaces exactly that version
    (If-Match) or creates the first (If-None-Match: *), else raises Conflict."""

    bucket: str
    region: str
    client: Any
    put_args: dict[str, str] = field(default_factory=dict)
    key: str = LEASE_KEY

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key} ({self.region})"

    def read(self) -> tuple[Lease | None, str | None]:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in MISSING_CODES:
                return None, None
            raise
        return Lease.from_json(got["Body"].read()), got["ETag"]

    def write(self, lease: Lease, etag: str | None) -> str:
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            put = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=lease.to_json(), **condition, **self.put_args
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in CONFLICT_CODES:
                raise Conflict("changed since it was read: another writer got there first") from None
            raise
        return put["ETag"]


def s3_in(region: str) -> Any:
    return aws.client("s3", region)


def lease_stores(
    settings: Settings, own: StackOutputs, peer: StackOutputs, client_for: Callable[[str], Any] = s3_in
) -> list[S3LeaseStore]:
    """The three stores of the pair's lease: own region's lease bucket, the peer's, the witness bucket."""
    witness = settings.fencing.witness_region
    if witness is None:
        raise ValueError(f"{PROJECT}:fencing.witnessRegion is not set for {settings.stack}; expected a third region")
    return [
        # Each stack's lease bucket takes SSE-KMS with that stack's backup key (its bucket policy asks for SSE-KMS).
        S3LeaseStore(lease_bucket(PROJECT, own.region), own.region, client_for(own.region), encryption_args(own)),
        S3LeaseStore(lease_bucket(PROJECT, peer.region), peer.region, client_for(peer.region), encryption_args(peer)),
        S3LeaseStore(
            witness_bucket(PROJECT, witness),
            witness,
            client_for(witness),
            # The pair's one account: the one its own backup key lives in.
            witness_encryption_args(witness, own.kms_key_arn.split(":")[4]),
        ),
    ]
