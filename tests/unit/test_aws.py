"""The one boto3 client factory: the region is always the one given, timeouts short, retries bounded."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from drtopo import aws
from drtopo.aws import client, endpoint_for, failure_line, parse_endpoints, use_endpoints


def test_clients_carry_the_region_timeouts_and_bounded_retries() -> None:
    rds = client("rds", "us-west-2")
    assert rds.meta.region_name == "us-west-2"
    assert (rds.meta.config.connect_timeout, rds.meta.config.read_timeout) == (3, 10)
    assert rds.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}


def test_a_call_to_a_cut_off_region_is_bounded_in_seconds_not_minutes() -> None:
    # boto3's defaults: 60 s connect, 60 s read, several attempts (minutes per call against a partition).
    assert aws.call_bound_seconds() == 2 * (3 + 10) + 2
    assert aws.call_bound_seconds() < 60


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_call_that_gets_no_answer_fails_with_one_line_naming_the_call_region_and_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    watch = client("cloudwatch", "us-east-1", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s")
    with pytest.raises(EndpointConnectionError) as raised:
        watch.describe_alarms(AlarmNames=["drtopo-us-east-1-takeover"])
    line = str(raised.value)
    assert "\n" not in line
    assert endpoint in line and "cloudwatch DescribeAlarms in us-east-1" in line and "2 attempt(s) of 10 s" in line


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (
            'Read timeout on endpoint URL: "http://127.0.0.1:4001/"',
            'Read timeout on endpoint URL: "http://127.0.0.1:4001/" (ssm PutParameter in us-east-1, '
            "2 attempt(s) of 10 s)",
        ),
        # botocore's multi-line reasons (a connection error's cause) become one line.
        (
            "Could not connect\n  to the endpoint",
            "Could not connect to the endpoint (ssm PutParameter in us-east-1, 2 attempt(s) of 10 s)",
        ),
    ],
)
def test_the_failure_line_is_one_line_with_the_call_and_its_region(reason: str, expected: str) -> None:
    assert failure_line(RuntimeError(reason), "ssm", "PutParameter", "us-east-1") == expected


def test_a_client_without_a_region_is_refused() -> None:
    with pytest.raises(ValueError, match="no region given for the s3 client"):
        client("s3", "")


EAST, WEST = "http://127.0.0.1:4001", "http://127.0.0.1:4002"


@pytest.mark.parametrize(
    ("service", "region", "expected"),
    [
        ("s3", "us-east-1", EAST),
        ("s3", "us-west-2", WEST),
        ("rds", "us-west-2", WEST),
        # Route53 is global: its API lives in us-east-1, whichever region the caller is in.
        ("route53", "us-west-2", EAST),
        ("route53", "us-east-1", EAST),
        # A region the map does not name: boto3's own choice (AWS_ENDPOINT_URL or real AWS).
        ("s3", "eu-west-1", None),
    ],
)
def test_the_endpoint_is_the_clients_region_or_a_global_services_home(
    service: str, region: str, expected: str | None
) -> None:
    assert endpoint_for(service, region, {"us-east-1": EAST, "us-west-2": WEST}) == expected


def test_clients_go_to_their_regions_endpoint_and_an_explicit_one_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4999")
    previous = use_endpoints({"us-east-1": EAST, "us-west-2": WEST})
    try:
        assert client("s3", "us-west-2").meta.endpoint_url == WEST
        assert client("route53", "us-west-2").meta.endpoint_url == EAST
        assert client("s3", "eu-west-1").meta.endpoint_url == "http://127.0.0.1:4999"
        assert client("s3", "us-west-2", endpoint_url="http://127.0.0.1:4003").meta.endpoint_url.endswith(":4003")
    finally:
        assert use_endpoints(previous) == {"us-east-1": EAST, "us-west-2": WEST}
    assert client("s3", "us-west-2").meta.endpoint_url == "http://127.0.0.1:4999"


def test_the_endpoint_map_is_read_from_region_equals_url_pairs() -> None:
    assert parse_endpoints(f" us-east-1={EAST}, us-west-2={WEST} ,") == {"us-east-1": EAST, "us-west-2": WEST}
    assert parse_endpoints("") == {}
    for bad in ("us-east-1", f"={EAST}", "us-east-1=127.0.0.1:4001"):
        with pytest.raises(ValueError, match="is not REGION=URL"):
            parse_endpoints(bad)


def test_a_command_gets_its_endpoints_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.cli import AWS_ENDPOINTS_ENV, context_from_environment

    monkeypatch.setenv(AWS_ENDPOINTS_ENV, f"us-east-1={EAST},us-west-2={WEST}")
    assert context_from_environment().aws_endpoints == {"us-east-1": EAST, "us-west-2": WEST}
    monkeypatch.setenv(AWS_ENDPOINTS_ENV, "us-east-1")
    with pytest.raises(SystemExit):
        context_from_environment()


# Within a failover run an endpoint that timed out is given up on: a partition costs the run one bound, not one per
# step. A listening socket that never accepts is a partitioned endpoint (the kernel completes the handshake, nothing
# answers); the test's clients wait 1 s per read, one attempt.
FAST = Config(connect_timeout=1, read_timeout=1, retries={"total_max_attempts": 1, "mode": "standard"})
KEYS = {"aws_access_key_id": "k", "aws_secret_access_key": "s"}


@pytest.fixture
def silent() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_an_endpoint_that_timed_out_in_a_run_is_not_called_again_in_that_run(
    silent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws, "CLIENT_CONFIG", FAST)
    other = f"http://127.0.0.1:{closed_port()}"
    with aws.unanswered_not_retried() as given_up:
        with pytest.raises(ReadTimeoutError):
            client("ssm", "us-east-1", endpoint_url=silent, **KEYS).get_parameter(Name="/drtopo/roles/dr/prod")
        assert list(given_up) == [silent]
        assert given_up[silent] == "ssm GetParameter in us-east-1"
        s3 = client("s3", "us-east-1", endpoint_url=f"{silent}/", **KEYS)
        started = time.monotonic()
        with pytest.raises(aws.NotRetried) as raised:
            s3.list_objects_v2(Bucket="drtopo-us-east-1")
        assert time.monotonic() - started < 0.5  # well within one read timeout: no request was sent
        assert isinstance(raised.value, ConnectTimeoutError)  # callers treat it as the timeout it stands for
        assert str(raised.value) == (
            f"{silent} not tried again: it did not answer earlier in this run (ssm GetParameter in us-east-1)"
        )
        # Another endpoint is still tried; a refusal (fast by itself) is not recorded.
        with pytest.raises(EndpointConnectionError):
            client("sns", "us-west-2", endpoint_url=other, **KEYS).list_topics()
        assert list(given_up) == [silent]
    # Outside the run the endpoint is tried again.
    with pytest.raises(ReadTimeoutError):
        client("ssm", "us-east-1", endpoint_url=silent, **KEYS).get_parameter(Name="/drtopo/roles/dr/prod")


def test_outside_a_run_every_call_is_tried(silent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "CLIENT_CONFIG", FAST)
    watch = client("cloudwatch", "us-east-1", endpoint_url=silent, **KEYS)
    for _ in range(2):
        with pytest.raises(ReadTimeoutError):
            watch.describe_alarms(AlarmNames=["drtopo-us-east-1-takeover"])


def test_an_endpoint_is_its_scheme_host_and_port() -> None:
    assert aws.endpoint_key("http://127.0.0.1:4001/drtopo-wal/wal/0001") == "http://127.0.0.1:4001"
    assert aws.endpoint_key("https://ssm.us-east-1.amazonaws.com") == "https://ssm.us-east-1.amazonaws.com"
    assert aws.endpoint_key(None) == ""
