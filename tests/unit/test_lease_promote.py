"""promote's fence step with the lease, on moto's S3 and KMS in-process: an unreachable prod costs the next epoch and
the wait for its lease to run out, and the bound is then the lease's; a reachable prod gets the lease handed over
without a wait; with the lease off, nothing is taken and nothing changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from drtopo.context import Context
from drtopo.database.loss_bound import BoundKind
from drtopo.failover.steps import Kind, Switchover, fence
from drtopo.fencing.lease import Lease
from drtopo.fencing.store import lease_bucket, witness_bucket
from drtopo.settings import PROJECT, load_settings

WITNESS = "eu-west-1"
LEASE, RENEW = 0.9, 0.3


@dataclass(frozen=True)
class OldPrimary:
    """prod's database as the fence step sees it: answering or not (the fence itself runs on the lab)."""

    answers: bool

    def reachable(self) -> bool:
        return self.answers

    def fence(self) -> dict[str, Any]:
        return {"method": "read-only", "proof": "write refused"}


@pytest.fixture
def pair() -> Iterator[dict[str, SimpleNamespace]]:
    with mock_aws():
        made = {}
        for stack, region in (("prod", "us-east-1"), ("dr", "us-west-2")):
            s3 = boto3.client("s3", region_name=region)
            where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            s3.create_bucket(Bucket=f"cfg-{stack}", **where)
            s3.create_bucket(Bucket=lease_bucket(PROJECT, region), **where)
            key = boto3.client("kms", region_name=region).create_key()["KeyMetadata"]["Arn"]
            made[stack] = SimpleNamespace(stack=stack, region=region, config_bucket=f"cfg-{stack}", kms_key_arn=key)
        boto3.client("s3", region_name=WITNESS).create_bucket(
            Bucket=witness_bucket(PROJECT, WITNESS), CreateBucketConfiguration={"LocationConstraint": WITNESS}
        )
        yield made


def run_fence(pair: dict[str, SimpleNamespace], mode: str, prod_answers: bool) -> Switchover:
    fencing = {
        "mode": mode,
        "leaseSeconds": LEASE,
        "renewSeconds": RENEW,
        "witnessRegion": WITNESS,
        "witnessStack": "prod",
    }
    settings = load_settings("dr", overrides={"fencing": fencing})
    sw = Switchover(Kind.PROMOTE, pair["dr"], pair["prod"], settings, Context())  # type: ignore[arg-type]
    sw.db = lambda outputs: OldPrimary(prod_answers)  # type: ignore[method-assign,assignment,return-value]
    fence(sw)
    return sw


def lease_in(bucket: str, region: str) -> Lease:
    body = boto3.client("s3", region_name=region).get_object(Bucket=bucket, Key="fencing/lease.json")["Body"]
    return Lease.from_json(body.read())


def test_an_unreachable_prod_costs_the_next_epoch_and_the_wait_for_its_lease(
    pair: dict[str, SimpleNamespace],
) -> None:
    started = time.monotonic()
    sw = run_fence(pair, "lease", prod_answers=False)
    assert time.monotonic() - started >= LEASE + RENEW
    measured = sw.report.measured
    assert measured["lease_wait_seconds"] >= LEASE + RENEW and measured["lease_epoch"] == 1
    assert measured["replica_lag_bound"] == BoundKind.LEASE
    assert sw.fence_owed  # the durable fence is still owed to prod, paid when it answers
    for bucket, region in (
        (lease_bucket(PROJECT, "us-east-1"), "us-east-1"),
        (lease_bucket(PROJECT, "us-west-2"), "us-west-2"),
        (witness_bucket(PROJECT, WITNESS), WITNESS),
    ):
        assert lease_in(bucket, region).holder == "dr"
    # Never in the configuration buckets: they replicate into each other.
    for bucket, region in (("cfg-prod", "us-east-1"), ("cfg-dr", "us-west-2")):
        assert boto3.client("s3", region_name=region).list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_a_planned_switchover_hands_the_lease_over_without_waiting(pair: dict[str, SimpleNamespace]) -> None:
    sw = run_fence(pair, "lease", prod_answers=True)
    assert "lease_wait_seconds" not in sw.report.measured and sw.report.measured["lease_epoch"] == 1
    assert [c.name for c in sw.report.checks] == ["lease", "fence"]
    assert "handed over" in sw.report.checks[0].detail


def test_with_the_lease_off_promote_is_unchanged(pair: dict[str, SimpleNamespace]) -> None:
    sw = run_fence(pair, "off", prod_answers=False)
    assert not {"lease_epoch", "lease_wait_seconds", "replica_lag_bound"} & set(sw.report.measured)
    assert [c.name for c in sw.report.checks] == ["fence"] and sw.fence_owed
    s3 = boto3.client("s3", region_name="us-west-2")
    for bucket in ("cfg-dr", lease_bucket(PROJECT, "us-west-2")):
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
