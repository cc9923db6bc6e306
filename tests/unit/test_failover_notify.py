"""The failover run's incident messages (drtopo/failover/run.py with drtopo/incident/notify.py), on moto's SNS in
us-west-2 with an SQS queue subscribed to read what was published: a step failing before promotion is an update and
no resolution; a run to its end sends the point-of-no-return update and a resolution with the measured RTO and what
is left; a step failing after promotion is an update and the run goes on. Each step's work is replaced by its
result (these tests are about what the run tells, not what the steps do; the lab tests run the real steps)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from drtopo.context import Context
from drtopo.failover import run, steps
from drtopo.failover.journal import Journal
from drtopo.failover.plan import Step, promote_plan
from drtopo.failover.results import (
    ApplicationDownResult,
    ApplicationResult,
    ConsumerGroupResult,
    DnsResult,
    FenceResult,
    GuardResult,
    PreflightResult,
    PromoteResult,
    ProtectResult,
    RolesResult,
)
from drtopo.incident.facts import duration_text
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report
from drtopo.settings import load_settings

REGION = "us-west-2"
DONE = {
    Step.PREFLIGHT: lambda sw: PreflightResult(True, False),
    Step.GUARD: lambda sw: GuardResult(rpo_seconds=0.25),
    Step.FENCE: lambda sw: FenceResult(False, reason="unreachable", owed=True),
    Step.PROMOTE: lambda sw: PromoteResult(),
    Step.CONSUMER_GROUP: lambda sw: ConsumerGroupResult(skipped=True),
    Step.APPLICATION: lambda sw: ApplicationResult(replicas=3, before=0, healthy=True),
    Step.DNS: lambda sw: DnsResult(mode="signal"),
    Step.APPLICATION_DOWN: lambda sw: ApplicationDownResult(scaled=True),
    Step.ROLES: lambda sw: RolesResult(next_commands=["pulumi up --stack dr"]),
    Step.PROTECT: lambda sw: ProtectResult(resumed_jobs=["pg-dump"]),
}


@pytest.fixture
def sns(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, object]]:
    """The dr region's incident topic and a queue subscribed to it (each queued body is SNS's envelope: Subject,
    Message, TopicArn)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="drtopo-us-west-2-incidents")["TopicArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        boto3.client("sns", region_name=REGION).subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

        def received() -> list[dict[str, str]]:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            return [json.loads(m["Body"]) for m in got]

        yield topic, received


def switchover(tmp_path: Path, topic: str) -> steps.Switchover:
    target = StackOutputs.model_construct(stack="dr", region=REGION, incident_topic_arn=topic, config_bucket="c")
    return steps.Switchover(
        kind=steps.Kind.PROMOTE,
        target=target,
        peer=StackOutputs.model_construct(stack="prod", region="us-east-1", config_bucket="p"),
        settings=load_settings("dr"),
        ctx=Context(state_dir=tmp_path),
        report=Report(),
    )


def play(tmp_path: Path, topic: str) -> run.Outcome:
    sw = switchover(tmp_path, topic)
    notifier = run.incident_notifier(sw, "python -m scripts.promote --stack dr", "me@x")
    journal = Journal.open("promote", "dr", tmp_path)
    plan = lambda sw, pre: promote_plan("dr", "prod", pre.peer_reachable)  # noqa: E731
    outcome = run.run_steps(sw, plan, Clock(), journal, tmp_path / "promote.json", notifier)
    assert notifier.write_record(tmp_path / "promote.json") == tmp_path / "promote.md"
    return outcome


def test_a_run_to_its_end_tells_promotion_then_the_resolution_with_the_rto(
    sns: tuple[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, received = sns
    for step, done in DONE.items():
        monkeypatch.setitem(steps.STEPS, step, done)

    outcome = play(tmp_path, topic)

    messages = received()  # type: ignore[operator]
    assert [m["Subject"] for m in messages] == [
        "UPDATE: Interface Exception Collector Service Outage",
        "RESOLVED: Interface Exception Collector Service Restored",
    ]
    assert {m["TopicArn"] for m in messages} == {topic}
    assert "dr (us-west-2) is promoted: the point of no return is passed" in messages[0]["Message"]
    measured = outcome.report.measured
    assert measured["rto_seconds"] == measured["seconds_to_dns_flipped"] and measured["rpo_seconds"] == 0.25
    assert f"Recovery Time (RTO): {duration_text(measured['rto_seconds'])}" in messages[1]["Message"]
    assert "pulumi up --stack dr" in messages[1]["Message"] and measured["left_to_do"] == ["pulumi up --stack dr"]
    sent = [(c.name, c.outcome) for c in outcome.report.checks if c.name.startswith("notify ")]
    assert sent == [("notify update", "pass"), ("notify resolution", "pass")]
    assert outcome.code == 0
    record = (tmp_path / "promote.md").read_text()
    assert "python -m scripts.promote --stack dr" in record and "me@x" in record


def test_a_step_failing_before_promotion_is_an_update_and_no_resolution(
    sns: tuple[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, received = sns
    monkeypatch.setitem(steps.STEPS, Step.PREFLIGHT, DONE[Step.PREFLIGHT])

    def guard_breaks(sw: steps.Switchover) -> GuardResult:
        raise ConnectionError("the standby went away")

    monkeypatch.setitem(steps.STEPS, Step.GUARD, guard_breaks)

    outcome = play(tmp_path, topic)

    messages = received()  # type: ignore[operator]
    assert [m["Subject"] for m in messages] == ["UPDATE: Interface Exception Collector Service Outage"]
    assert "step guard failed: the standby went away; the promote stopped before promotion" in messages[0]["Message"]
    assert outcome.code == 1


def test_a_step_failing_after_promotion_is_an_update_and_the_run_goes_on(
    sns: tuple[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, received = sns
    for step, done in DONE.items():
        monkeypatch.setitem(steps.STEPS, step, done)

    def dns_breaks(sw: steps.Switchover) -> DnsResult:
        raise TimeoutError("route53 did not answer")

    monkeypatch.setitem(steps.STEPS, Step.DNS, dns_breaks)

    outcome = play(tmp_path, topic)

    messages = received()  # type: ignore[operator]
    subjects = [m["Subject"].split(":")[0] for m in messages]
    assert subjects == ["UPDATE", "UPDATE", "RESOLVED"]
    assert "step dns failed after promotion: route53 did not answer; the run goes on" in messages[1]["Message"]
    assert "rerun scripts.promote to finish dns" in messages[2]["Message"]
    # No DNS flip measured: the RTO is the whole run.
    assert "seconds_to_dns_flipped" not in outcome.report.measured
    assert outcome.report.measured["rto_seconds"] >= outcome.report.measured["steps"][-1]["at_seconds"]
