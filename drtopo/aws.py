"""The one place boto3 clients are built: the region always given, short timeouts, a bounded number of retries.

A region that is down must not hold a failover for boto3's default minutes of retries, so every client connects
within 5 s, reads within 30 s and makes at most three attempts (two retries). boto3 itself honours
`AWS_ENDPOINT_URL` (the lab's emulator); the lab passes its endpoint and dummy credentials explicitly.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from drtopo.outputs import StackOutputs

CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})


def client(service: str, region: str, *, endpoint_url: str | None = None, **credentials: str) -> Any:
    """A boto3 client of `service` in `region` with the timeouts and retries above."""
    if not region:
        raise ValueError(f"no region given for the {service} client; expected an AWS region such as us-east-1")
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=CLIENT_CONFIG, **credentials)


def stack_client(service: str, outputs: StackOutputs) -> Any:
    """A client of `service` in the stack's own region."""
    return client(service, outputs.region)
