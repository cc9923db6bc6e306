"""The lab's AWS emulator with fencing.mode lease: each stack's lease bucket in its region and the witness bucket
in the witness region, versioned, private, encrypted by default with the key the program gives them, and, unlike
the backup buckets, not replicated (moto's own server on loopback, seeded by the lab's functions)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from drtopo.fencing.store import lease_bucket, witness_bucket, witness_key_alias
from drtopo.settings import PROJECT, load_settings
from lab import aws

WITNESS = "eu-west-1"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def lease_settings(stack: str) -> Any:
    fencing = {"mode": "lease", "witnessRegion": WITNESS, "witnessStack": "prod"}
    return load_settings(stack, overrides={"fencing": fencing})


def test_seeding_with_the_lease_creates_the_three_unreplicated_stores(endpoint: str) -> None:
    stacks = {stack: lease_settings(stack) for stack in ("prod", "dr")}
    keys = {stack: aws._kms_key(s, endpoint) for stack, s in stacks.items()}
    for stack, settings in stacks.items():
        aws.lease_stores(settings, endpoint, keys[stack])
    expected = [
        (lease_bucket(PROJECT, "us-east-1"), "us-east-1", keys["prod"]),
        (lease_bucket(PROJECT, "us-west-2"), "us-west-2", keys["dr"]),
    ]
    kms = aws.client("kms", WITNESS, endpoint)
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    witness_key = kms.describe_key(KeyId=aliases[f"alias/{witness_key_alias(WITNESS)}"])["KeyMetadata"]["Arn"]
    expected.append((witness_bucket(PROJECT, WITNESS), WITNESS, witness_key))
    for bucket, region, key in expected:
        s3 = aws.client("s3", region, endpoint)
        assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] in (region, None)
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == key
        assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
        with pytest.raises(ClientError) as refused:
            s3.get_bucket_replication(Bucket=bucket)
        assert refused.value.response["Error"]["Code"] == "ReplicationConfigurationNotFoundError"
    # A second seeding (or a test's own) finds them and creates nothing.
    assert not aws.ensure_lease_bucket(endpoint, lease_bucket(PROJECT, "us-east-1"), "us-east-1")
    # The lease switched on again in a running lab (Lab.set_fencing): the same witness key, no second alias.
    aws.lease_stores(stacks["prod"], endpoint, keys["prod"])
    again = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert again[f"alias/{witness_key_alias(WITNESS)}"] == aliases[f"alias/{witness_key_alias(WITNESS)}"]


def test_with_the_lease_off_the_lab_creates_no_lease_store(endpoint: str) -> None:
    aws.reset(endpoint)
    aws.lease_stores(load_settings("prod"), endpoint, "unused")
    assert aws.client("s3", "us-east-1", endpoint).list_buckets()["Buckets"] == []
