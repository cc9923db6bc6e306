"""The failover lock beside replication: each stack's configuration bucket replicates everything, delete markers
included, into the peer's (components/storage.py), late and in no promised order. The lock of a run that makes one
stack primary must not be taken, freed or faked by the replicas of the peer's lock (moto's S3; the replication the
emulator does not do is applied by hand, late, as S3 would apply it)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from drtopo.failover.lock import FailoverLock, lock_key
from drtopo.report import Unsafe

REGIONS = {"prod": "us-east-1", "dr": "us-west-2"}


@pytest.fixture
def pair() -> Iterator[dict[str, Any]]:
    with mock_aws():
        made = {}
        for stack, region in REGIONS.items():
            s3 = boto3.client("s3", region_name=region)
            where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            bucket = f"drtopo-{region}-config"
            s3.create_bucket(Bucket=bucket, **where)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            key = boto3.client("kms", region_name=region).create_key()["KeyMetadata"]["Arn"]
            made[stack] = SimpleNamespace(stack=stack, region=region, config_bucket=bucket, kms_key_arn=key)
        yield made


def replicate_late(source: Any, target: Any) -> list[str]:
    """Apply to `target` every version and delete marker of `source`'s bucket, oldest first, over whatever
    `target` was written meanwhile (S3 replication's worst case: the late replica lands as the newest version)."""
    src = boto3.client("s3", region_name=source.region)
    dst = boto3.client("s3", region_name=target.region)
    listed = src.list_object_versions(Bucket=source.config_bucket)
    events = [(v["LastModified"], v["Key"], v["VersionId"], "put") for v in listed.get("Versions", [])]
    events += [(m["LastModified"], m["Key"], m["VersionId"], "delete") for m in listed.get("DeleteMarkers", [])]
    keys = []
    for _, key, version, kind in sorted(events):
        if kind == "put":
            body = src.get_object(Bucket=source.config_bucket, Key=key, VersionId=version)["Body"].read()
            dst.put_object(Bucket=target.config_bucket, Key=key, Body=body)
        else:
            dst.delete_object(Bucket=target.config_bucket, Key=key)
        keys.append(key)
    return keys


def lock(outputs: Any) -> FailoverLock:
    return FailoverLock(outputs, boto3.client("s3", region_name=outputs.region))  # type: ignore[arg-type]


def test_each_stack_has_its_own_lock_key() -> None:
    assert lock_key("prod") != lock_key("dr")
    assert {lock_key(s) for s in REGIONS} == {"locks/failover-prod.json", "locks/failover-dr.json"}


def test_a_late_replica_of_a_failback_neither_frees_nor_fakes_a_promote_lock(pair: dict[str, Any]) -> None:
    prod, dr = pair["prod"], pair["dr"]
    failback = lock(prod)
    failback.acquire("failback", "prod")
    failback.release()  # its object and its delete marker are still on their way to dr's bucket
    promote = lock(dr)
    mine = promote.acquire("promote", "dr")
    replicated = replicate_late(prod, dr)
    assert replicated == [lock_key("prod"), lock_key("prod")]
    # The promote still holds dr's lock: a second promote is refused, naming it.
    assert promote.holder() == mine
    with pytest.raises(Unsafe, match="another failover holds the lock"):
        lock(dr).acquire("promote", "dr")
    promote.release()
    assert promote.holder() is None
    lock(dr).acquire("promote", "dr")


def test_a_late_replica_of_a_promote_leaves_a_failback_lock_alone(pair: dict[str, Any]) -> None:
    prod, dr = pair["prod"], pair["dr"]
    promote = lock(dr)
    promote.acquire("promote", "dr")
    failback = lock(prod)
    mine = failback.acquire("failback", "prod")
    promote.release()
    replicate_late(dr, prod)
    assert failback.holder() == mine
    failback.release()
    assert failback.holder() is None
