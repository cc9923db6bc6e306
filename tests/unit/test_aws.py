"""The one boto3 client factory: the region is always the one given, timeouts short, retries bounded."""

from __future__ import annotations

import pytest

from drtopo.aws import client


def test_clients_carry_the_region_timeouts_and_bounded_retries() -> None:
    rds = client("rds", "us-west-2")
    assert rds.meta.region_name == "us-west-2"
    assert rds.meta.config.connect_timeout == 5 and rds.meta.config.read_timeout == 30
    assert rds.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_a_client_without_a_region_is_refused() -> None:
    with pytest.raises(ValueError, match="no region given for the s3 client"):
        client("s3", "")
