"""The one place boto3 clients are built: the region always given, short timeouts, a bounded number of retries.

A region that is down must not hold a failover for boto3's default minutes of retries, so every client connects
within 5 s, reads within 30 s and makes at most three attempts (two retries). Every call is logged (service,
operation, region, the names it acts on, the HTTP status), never its body: bodies carry secrets.

Endpoints are per region, as VPC interface endpoints are: the command edge (scripts/cli.py, from
DRTOPO_AWS_ENDPOINTS) hands `use_endpoints` a map region -> URL, and every client of a region in the map goes there.
A global service goes to its home region's endpoint (Route53: us-east-1, where its control plane lives). A region
missing from the map falls back to what boto3 does by itself: `AWS_ENDPOINT_URL` (the lab's emulator) or real AWS.
An explicit `endpoint_url` (the lab's own set-up) wins over both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config

from drtopo.outputs import StackOutputs

log = logging.getLogger(__name__)
# The request parameters a log line may name: identifiers only, never a body, a password or a secret's value.
LOGGED_PARAMETERS = (
    "Bucket",
    "Key",
    "Prefix",
    "DBInstanceIdentifier",
    "SourceDBInstanceIdentifier",
    "TargetDBInstanceIdentifier",
    "DBParameterGroupName",
    "HostedZoneId",
    "HealthCheckId",
    "AlarmName",
    "AlarmNames",
    "Name",
    "SecretId",
    "TopicArn",
)

CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
# Global services and the region whose endpoint serves their API.
GLOBAL_SERVICES = {"route53": "us-east-1", "iam": "us-east-1", "cloudfront": "us-east-1"}

_endpoints: dict[str, str] = {}


def parse_endpoints(text: str) -> dict[str, str]:
    """`REGION=URL,REGION=URL` as a map (pure); ValueError names a malformed entry. Empty text: no map."""
    found: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        region, sep, url = part.partition("=")
        region, url = region.strip(), url.strip()
        if not sep or not region or not url.startswith(("http://", "https://")):
            raise ValueError(f"{part!r} is not REGION=URL (e.g. us-east-1=http://127.0.0.1:4566)")
        found[region] = url
    return found


def endpoint_for(service: str, region: str, endpoints: Mapping[str, str]) -> str | None:
    """The endpoint of `service`'s API for a client in `region`: the home region's for a global service, else the
    region's own; None when the map has none (boto3's own choice then) (pure)."""
    return endpoints.get(GLOBAL_SERVICES.get(service, region))


def use_endpoints(endpoints: Mapping[str, str]) -> dict[str, str]:
    """Make `endpoints` the per-region map of every client built from now on; returns the previous map (for a
    command run in-process to put back)."""
    global _endpoints
    previous, _endpoints = _endpoints, dict(endpoints)
    return previous


def client(service: str, region: str, *, endpoint_url: str | None = None, **credentials: str) -> Any:
    """A boto3 client of `service` in `region` with the timeouts and retries above, at the region's endpoint."""
    if not region:
        raise ValueError(f"no region given for the {service} client; expected an AWS region such as us-east-1")
    endpoint = endpoint_url or endpoint_for(service, region, _endpoints)
    made = boto3.client(service, region_name=region, endpoint_url=endpoint, config=CLIENT_CONFIG, **credentials)
    made.meta.events.register("before-parameter-build", _log_call)
    made.meta.events.register("after-call", _log_answer)
    return made


def _log_call(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    named = {k: params[k] for k in LOGGED_PARAMETERS if k in params}
    region = context.get("client_region")
    log.debug("aws %s.%s in %s %s", model.service_model.service_name, model.name, region, named)


def _log_answer(http_response: Any, model: Any, **_: Any) -> None:
    status = getattr(http_response, "status_code", None)
    log.debug("aws %s.%s answered %s", model.service_model.service_name, model.name, status)


def stack_client(service: str, outputs: StackOutputs) -> Any:
    """A client of `service` in the stack's own region."""
    return client(service, outputs.region)
