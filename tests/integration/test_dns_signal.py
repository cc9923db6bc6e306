"""DNS failover through the data plane, on the AWS emulator (a moto_server of its own, seeded as the lab seeds it).

What the emulator shows: the takeover alarm exists in each stack's own region, promote's DNS step writes the signal
there (the metric data point and the alarm state) and leaves the failover records as declared; when CloudWatch does
not answer, the step falls back to the record UPSERT and says so. What it cannot show: Route53 evaluating the health
checks and answering DNS queries (moto computes no health-check status and serves no DNS), nor CloudWatch evaluating
the alarm from its metric; `drtopo.failover.dns.current` applies Route53's documented failover rule instead.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drtopo import naming
from drtopo.failover import dns
from drtopo.outputs import StackOutputs, bucket_outputs, outputs_document
from drtopo.settings import Settings, load_settings
from lab import aws, process

pytestmark = pytest.mark.lab
STACKS = ("prod", "dr")


def stack_outputs(settings: Settings, resources: aws.StackResources) -> StackOutputs:
    document = outputs_document(
        settings,
        {
            "dbInstanceId": resources.db_instance_id,
            "dbArn": resources.db_arn,
            "dbAddress": process.LOOPBACK,
            "dbPort": settings.database.port,
            "kmsKeyArn": resources.kms_key_arn,
            **bucket_outputs(resources.buckets),
            "hostedZoneId": resources.hosted_zone_id,
            "healthCheckId": resources.health_check_id,
        },
    )
    return StackOutputs.model_validate(document)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("dns-signal")
    port = process.free_port()
    pid = aws.spawn(root, port)
    try:
        process.wait_port(port, 60, "moto_server", pid)
        yield aws.endpoint_url(port)
    finally:
        process.stop(root, aws.PROCESS_NAME)


@pytest.fixture
def pair(emulator: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, StackOutputs]:
    """Both stacks' resources freshly seeded; boto3 pointed at the emulator as the lab's env file does."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator)
    for key, value in aws.DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    aws.reset(emulator)
    settings = {s: load_settings(s) for s in STACKS}
    resources = aws.seed(emulator, settings)
    return {s: stack_outputs(settings[s], resources[s]) for s in STACKS}


def watch(out: StackOutputs) -> Any:
    """CloudWatch of the stack's region on the emulator itself (never the endpoint a test points boto3 away to)."""
    return aws.client("cloudwatch", out.region, os.environ["AWS_ENDPOINT_URL"])


def alarm(out: StackOutputs) -> dict[str, Any]:
    (found,) = watch(out).describe_alarms(AlarmNames=[naming.takeover_alarm_name(out.region)])["MetricAlarms"]
    return found


def signal_points(out: StackOutputs) -> list[float]:
    """The Takeover data points published in the stack's region (moto keeps metrics per region)."""
    metrics = watch(out).list_metrics(Namespace=naming.TAKEOVER_NAMESPACE)["Metrics"]
    assert [m["Dimensions"] for m in metrics] in ([], [[{"Name": "Region", "Value": out.region}]])
    now = dt.datetime.now(dt.UTC)
    stats = watch(out).get_metric_statistics(
        Namespace=naming.TAKEOVER_NAMESPACE,
        MetricName=naming.TAKEOVER_METRIC,
        Dimensions=[{"Name": "Region", "Value": out.region}],
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    return [p["Maximum"] for p in stats]


def test_promote_flips_the_signal_in_the_region_that_takes_over(pair: dict[str, StackOutputs]) -> None:
    prod, dr = pair["prod"], pair["dr"]
    assert dns.current(dr) == {prod.set_identifier: "PRIMARY", dr.set_identifier: "SECONDARY"}
    # moto starts an alarm OK (AWS: INSUFFICIENT_DATA, which the peer's check counts healthy); no data point yet.
    assert alarm(dr)["StateValue"] != "ALARM" and alarm(prod)["StateValue"] != "ALARM"
    assert signal_points(dr) == signal_points(prod) == []

    result = dns.fail_over(dr, prod)

    assert (result["dns_path"], result["mode"]) == (dns.DATA_PLANE, "signal") and "records" not in result
    assert result["signal"] == {
        "signal": "drtopo-us-west-2-takeover",
        "peer_cleared": True,
        "peer": dns.PEER_CLEARED,
        "peer_error": None,
    }
    assert result["signals"] == {dr.region: "ALARM", prod.region: "OK"}
    assert alarm(dr)["StateValue"] == "ALARM" and alarm(prod)["StateValue"] == "OK"
    assert signal_points(dr) == [1.0] and signal_points(prod) == [0.0]
    # The records are as declared (no control-plane change); Route53 answers dr's because prod's is vetoed.
    assert dns.record_state(dr) == {prod.set_identifier: "PRIMARY", dr.set_identifier: "SECONDARY"}
    assert dns.current(dr) == result["after"] == {prod.set_identifier: "SECONDARY", dr.set_identifier: "PRIMARY"}


def test_failback_clears_the_other_signal(pair: dict[str, StackOutputs]) -> None:
    prod, dr = pair["prod"], pair["dr"]
    dns.fail_over(dr, prod)
    result = dns.fail_over(prod, dr)
    assert result["mode"] == "signal"
    assert alarm(prod)["StateValue"] == "ALARM" and alarm(dr)["StateValue"] == "OK"
    assert dns.current(prod) == {prod.set_identifier: "PRIMARY", dr.set_identifier: "SECONDARY"}


def test_the_record_upsert_is_the_fallback_when_cloudwatch_does_not_answer(
    pair: dict[str, StackOutputs], monkeypatch: pytest.MonkeyPatch
) -> None:
    prod, dr = pair["prod"], pair["dr"]
    # CloudWatch (in every region) at a loopback port nobody listens on; Route53 still answers.
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", f"http://{process.LOOPBACK}:{process.free_port()}")

    result = dns.fail_over(dr, prod)

    assert (result["dns_path"], result["mode"]) == (dns.FALLBACK, "fallback")
    assert "takeover signal drtopo-us-west-2-takeover in us-west-2 not written" in result["fallback_reason"]
    assert result["records"]["changes"] == 2
    assert dns.record_state(dr) == {prod.set_identifier: "SECONDARY", dr.set_identifier: "PRIMARY"}
    assert result["after"] == {prod.set_identifier: "SECONDARY", dr.set_identifier: "PRIMARY"}
    monkeypatch.delenv("AWS_ENDPOINT_URL_CLOUDWATCH")
    assert signal_points(dr) == [] and alarm(dr)["StateValue"] != "ALARM"  # nothing was written there
