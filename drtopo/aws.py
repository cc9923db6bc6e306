"""The one place boto3 clients are built: the region always given, short timeouts, a bounded number of retries.

A region that is down must not hold a failover for minutes: boto3's defaults are 60 s connect and 60 s read per
attempt, and even 30 s reads with three attempts made a promote against a partitioned us-east-1 take 471 s (about
92 s per call). A partitioned
region's endpoint usually accepts the connection and then never answers, so the read timeout is what a call waits
out: every client connects within CONNECT_TIMEOUT_S, reads within READ_TIMEOUT_S and makes at most MAX_ATTEMPTS
attempts, so a call to a cut-off region fails within `call_bound_seconds()` (about 20 s) with one line naming the
service, operation, region and endpoint (`_name_failure`). Every call is logged (service, operation, region, the
names it acts on, the HTTP status), never its body: bodies carry secrets.

Within a failover run (`unanswered_not_retried`, which promote and failback enter) an endpoint that timed out once is
not tried again: every later call to it fails at once with `NotRetried` (a connect timeout, naming the endpoint and
the first failure), so a partitioned region costs the run one bound, not one per step (the role marker's read, the
incident topic, the old region's signals). Only timeouts count: a refused connection fails fast by itself.

Endpoints are per region, as VPC interface endpoints are: the command edge (scripts/cli.py, from
DRTOPO_AWS_ENDPOINTS) hands `use_endpoints` a map region -> URL, and every client of a region in the map goes there.
A global service goes to its home region's endpoint (Route53: us-east-1, where its control plane lives). A region
missing from the map falls back to what boto3 does by itself: `AWS_ENDPOINT_URL` (the lab's emulator) or real AWS.
An explicit `endpoint_url` (the lab's own set-up) wins over both.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ConnectTimeoutError, ReadTimeoutError

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

# A healthy API answers the calls drtopo makes in well under a second (large objects stream: the read timeout bounds
# each wait for bytes, not the whole transfer); 10 s leaves room for a loaded endpoint, and one retry absorbs a
# dropped connection or a throttle without doubling a dead region's wait more than once.
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 10
MAX_ATTEMPTS = 2  # the first attempt and one retry
CLIENT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
    retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
)
# Global services and the region whose endpoint serves their API.
GLOBAL_SERVICES = {"route53": "us-east-1", "iam": "us-east-1", "cloudfront": "us-east-1"}

_endpoints: dict[str, str] = {}
# Inside `unanswered_not_retried`: endpoint (scheme://host:port) -> the line of its first timeout; None outside.
_unanswered: dict[str, str] | None = None


class NotRetried(ConnectTimeoutError):
    """A call not made: its endpoint timed out earlier in this run (`unanswered_not_retried`)."""

    fmt = "{endpoint_url} not tried again: it did not answer earlier in this run ({first})"


def endpoint_key(url: str | None) -> str:
    """The endpoint a URL reaches, as `scheme://host:port` (pure): S3's path-style URLs name the bucket after it."""
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@contextlib.contextmanager
def unanswered_not_retried() -> Iterator[dict[str, str]]:
    """For the duration: an endpoint that timed out is not called again (NotRetried at once); yields the endpoints
    given up on so far (endpoint -> its first failure). Nested use keeps the outer record."""
    global _unanswered
    if _unanswered is not None:
        yield _unanswered
        return
    _unanswered = {}
    try:
        yield _unanswered
    finally:
        _unanswered = None


def call_bound_seconds() -> float:
    """The longest a call to an endpoint that accepts and never answers (or never accepts) can take: every attempt
    waits out its connect and read timeouts; standard mode's backoff between attempts is at most 20 s and in
    practice below 1 s for one retry, so 2 s covers it (pure)."""
    return MAX_ATTEMPTS * (CONNECT_TIMEOUT_S + READ_TIMEOUT_S) + 2.0


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
    made.meta.events.register("after-call-error", _name_failure)
    made.meta.events.register("before-call", functools.partial(_skip_unanswered, endpoint_key(made.meta.endpoint_url)))
    return made


def _skip_unanswered(endpoint: str, model: Any, context: dict[str, Any], **_: Any) -> None:
    given_up = _unanswered
    if given_up is None or endpoint not in given_up:
        return
    service, operation, region = model.service_model.service_name, model.name, context.get("client_region")
    log.debug("aws %s.%s in %s not tried: %s timed out earlier in this run", service, operation, region, endpoint)
    raise NotRetried(endpoint_url=endpoint, first=given_up[endpoint])


def failure_line(exc: BaseException, service: str, operation: str, region: str | None) -> str:
    """One line for a call that failed without an answer: what was called, where, and botocore's own reason (which
    names the endpoint URL) (pure)."""
    reason = " ".join(str(exc).split())
    return f"{reason} ({service} {operation} in {region}, {MAX_ATTEMPTS} attempt(s) of {READ_TIMEOUT_S} s)"


def _name_failure(exception: BaseException, context: dict[str, Any], event_name: str = "", **_: Any) -> None:
    # botocore's timeout and connection errors name the endpoint only; the region and the call go into the message
    # (its args, which str() reads), so whoever reports it in one line says which region did not answer.
    if not isinstance(exception, BotoCoreError) or not exception.args:
        return
    parts = event_name.split(".")
    service, operation = (parts[1], parts[2]) if len(parts) >= 3 else ("aws", "call")
    line = failure_line(exception, service, operation, context.get("client_region"))
    exception.args = (line, *exception.args[1:])
    given_up = _unanswered
    if given_up is not None and isinstance(exception, (ConnectTimeoutError, ReadTimeoutError)):
        endpoint = endpoint_key(getattr(exception, "kwargs", {}).get("endpoint_url"))
        if endpoint:
            given_up.setdefault(endpoint, f"{service} {operation} in {context.get('client_region')}")


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
