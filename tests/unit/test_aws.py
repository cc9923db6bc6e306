"""The one boto3 client factory: the region is always the one given, timeouts short, retries bounded."""

from __future__ import annotations

import socket

import pytest
from botocore.exceptions import EndpointConnectionError

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
