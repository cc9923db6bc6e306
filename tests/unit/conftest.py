"""Fixtures for the unit suite: the program evaluated under Pulumi mocks, once per (stack, role) per session.

An evaluation takes about half a second; caching keeps `pytest tests/unit` well under a minute. Evaluations are
read-only records, so sharing them between tests is safe; equal settings share one (tests/evaluations.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache

import boto3
import pytest
from moto import mock_aws

from drtopo.fencing.store import S3LeaseStore
from drtopo.settings import load_settings
from evaluation.mock_program import Evaluation
from lab.project import WITNESS_REGION
from tests.evaluations import evaluation_of

# The lease's store regions in the unit tests: the pair's and the lab's witness.
LEASE_REGIONS = ("us-east-1", "us-west-2", WITNESS_REGION)


@cache
def evaluated(stack: str, role: str | None = None) -> Evaluation:
    """The program for `stack` as configured, or with its role switched to `role`."""
    overrides = {"role": role} if role else None
    return evaluation_of(load_settings(stack, overrides=overrides))


@pytest.fixture(scope="session")
def program() -> Callable[[str, str | None], Evaluation]:
    return evaluated


@pytest.fixture(scope="session")
def prod() -> Evaluation:
    """prod as configured: the primary."""
    return evaluated("prod")


@pytest.fixture(scope="session")
def dr() -> Evaluation:
    """dr as configured: the standby."""
    return evaluated("dr")


@pytest.fixture(scope="session", params=["prod", "dr"])
def stack(request: pytest.FixtureRequest) -> Evaluation:
    """Each stack as configured (prod primary, dr standby)."""
    return evaluated(request.param)


@pytest.fixture
def stores() -> Iterator[list[S3LeaseStore]]:
    """The lease's three stores (the pair's regions and the witness's) as buckets in moto's in-process S3."""
    with mock_aws():
        made = []
        for region in LEASE_REGIONS:
            client = boto3.client("s3", region_name=region)
            where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            client.create_bucket(Bucket=f"lease-{region}", **where)
            made.append(S3LeaseStore(f"lease-{region}", region, client))
        yield made
