"""The one place boto3 clients are built: the region always given, short timeouts, a bounded number of retries.

A region that is down must not hold a failover for boto3's default minutes of retries, so every client connects
within 5 s, reads within 30 s and makes at most three attempts (two retries). boto3 itself honours
`AWS_ENDPOINT_URL` (the lab's emulator); the lab passes its endpoint and dummy credentials explicitly. Every call is
logged (service, operation, region, the names it acts on, the HTTP status), never its body: bodies carry secrets.
"""

from __future__ import annotations

import logging
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


def client(service: str, region: str, *, endpoint_url: str | None = None, **credentials: str) -> Any:
    """A boto3 client of `service` in `region` with the timeouts and retries above."""
    if not region:
        raise ValueError(f"no region given for the {service} client; expected an AWS region such as us-east-1")
    made = boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=CLIENT_CONFIG, **credentials)
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
