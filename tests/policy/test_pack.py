"""The pulumi-policy pack over the same rules: the wrappers called directly, and the real pack process answering
the analyzer protocol that `pulumi preview --policy-pack policies/` speaks (gRPC on loopback)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from drtopo.settings import load_settings
from policies import resource_types as t
from policies.pack import build_policies, stack_of
from policies.registry import RULES

ROOT = Path(__file__).resolve().parents[2]
PROD = "urn:pulumi:prod::drtopo::"


def options(protect: bool = True) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def policy(name: str):
    policies = {p.name: p for p in build_policies(lambda stack: load_settings(stack))}
    return policies[name]


def run_resource_policy(name: str, type_token: str, props: dict) -> list[str]:
    reported: list[str] = []
    args = ResourceValidationArgs(
        type_token, unknown_checking_proxy(props), f"{PROD}{type_token}::db", "db", options(), None
    )
    policy(name).validate(args, lambda message, urn=None: reported.append(message))
    return reported


def test_one_policy_per_rule_with_its_level() -> None:
    policies = build_policies()
    assert [p.name for p in policies] == [r.name for r in RULES]
    assert {p.enforcement_level.value for p in policies} == {"mandatory", "advisory"}


def test_resource_policy_reports_the_rule_message() -> None:
    reported = run_resource_policy("rds-deletion-protection", t.RDS_INSTANCE, {"deletionProtection": False})
    assert reported == ["Instance 'db': deletionProtection = false; required true"]
    assert run_resource_policy("rds-deletion-protection", t.RDS_INSTANCE, {"deletionProtection": True}) == []


def test_unknown_values_are_skipped_not_guessed() -> None:
    props = {"deletionProtection": UNKNOWN_STRING_VALUE}
    assert run_resource_policy("rds-deletion-protection", t.RDS_INSTANCE, props) == []


def test_stack_policy_ties_companions_by_dependency_when_the_name_is_unknown() -> None:
    bucket = PolicyResource(
        t.BUCKET, {"bucket": "drtopo-us-east-1-dumps"}, f"{PROD}{t.BUCKET}::b", "b", options(), None, None, [], {}
    )
    versioning = PolicyResource(
        t.BUCKET_VERSIONING,
        {"bucket": UNKNOWN_STRING_VALUE, "versioningConfiguration": {"status": "Suspended"}},
        f"{PROD}{t.BUCKET_VERSIONING}::b",
        "b",
        options(False),
        None,
        None,
        [bucket],
        {"bucket": [bucket]},
    )
    reported: list[tuple[str, str | None]] = []
    args = StackValidationArgs([bucket, versioning])
    policy("s3-bucket-versioned").validate(args, lambda message, urn=None: reported.append((message, urn)))
    assert reported == [
        ("BucketVersioning 'b': versioningConfiguration.status = 'Suspended'; required 'Enabled'", versioning.urn)
    ]


def test_nested_unknown_values_are_not_reported() -> None:
    bucket = PolicyResource(t.BUCKET, {"bucket": "b1"}, f"{PROD}{t.BUCKET}::b", "b", options(), None, None, [], {})
    versioning = PolicyResource(
        t.BUCKET_VERSIONING,
        {"bucket": "b1", "versioningConfiguration": {"status": UNKNOWN_STRING_VALUE}},
        f"{PROD}{t.BUCKET_VERSIONING}::b",
        "b",
        options(False),
        None,
        None,
        [],
        {},
    )
    reported: list[str] = []
    policy("s3-bucket-versioned").validate(
        StackValidationArgs([bucket, versioning]), lambda m, urn=None: reported.append(m)
    )
    assert reported == []


def test_stack_name_comes_from_the_urn() -> None:
    assert stack_of(f"{PROD}aws:s3/bucket:Bucket::b") == "prod"
    with pytest.raises(ValueError, match="not a Pulumi URN"):
        stack_of("arn:aws:s3:::b")


def test_importing_the_rules_starts_no_server() -> None:
    code = "import policies.pack, policies.engine, policies.check; print('imported')"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "imported", done.stderr


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The pack as the pulumi CLI starts it: `python __main__.py` in policies/, printing its port."""
    process = subprocess.Popen(
        [sys.executable, "__main__.py"], cwd=ROOT / "policies", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().decode().strip())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_pack_process_lists_every_rule(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "drtopo"
    assert sorted(p.name for p in info.policies) == sorted(r.name for r in RULES)


def test_pack_process_reports_a_violation(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    properties = struct_pb2.Struct()
    properties.update({"storageEncrypted": False, "kmsKeyId": "arn:aws:kms:us-east-1:1:key/k", "multiAz": True})
    request = analyzer_pb2.AnalyzeRequest(
        type=t.RDS_INSTANCE,
        properties=properties,
        urn=f"{PROD}{t.RDS_INSTANCE}::database",
        name="database",
        options=analyzer_pb2.AnalyzerResourceOptions(protect=True),
    )
    response = analyzer.Analyze(request, timeout=30)
    found = {(d.policyName, d.message.splitlines()[-1]) for d in response.diagnostics}
    assert ("rds-encrypted", "Instance 'database': storageEncrypted = false; required true") in found
    assert not any(d.policyName == "rds-multi-az" for d in response.diagnostics)


@pytest.mark.parametrize("subscribed", [True, False])
def test_a_new_topic_is_tied_to_its_alarm_and_subscriptions_by_dependency(subscribed: bool) -> None:
    """During the first preview no topic has an ARN yet: the alarm's actions and the subscription's topic are unknown,
    and only their dependencies on the topic say which is whose."""
    topic = PolicyResource(
        t.SNS_TOPIC, {"kmsMasterKeyId": UNKNOWN_STRING_VALUE}, f"{PROD}{t.SNS_TOPIC}::dns-alerts", "dns-alerts",
        options(False), None, None, [], {},
    )  # fmt: skip
    alarm = PolicyResource(
        t.METRIC_ALARM,
        {"alarmActions": [UNKNOWN_STRING_VALUE], "okActions": [UNKNOWN_STRING_VALUE]},
        f"{PROD}{t.METRIC_ALARM}::dns-takeover",
        "dns-takeover",
        options(False),
        None,
        None,
        [topic],
        {"alarmActions": [topic], "okActions": [topic]},
    )
    subscription = PolicyResource(
        t.SNS_TOPIC_SUBSCRIPTION,
        {"topic": UNKNOWN_STRING_VALUE, "protocol": "email", "endpoint": "dr-team@biopro.com"},
        f"{PROD}{t.SNS_TOPIC_SUBSCRIPTION}::dns-alerts-email",
        "dns-alerts-email",
        options(False),
        None,
        None,
        [topic],
        {"topic": [topic]},
    )
    reported: list[str] = []
    resources = [topic, alarm, subscription] if subscribed else [topic, alarm]
    policy("alarms-notify-someone").validate(StackValidationArgs(resources), lambda m, urn=None: reported.append(m))
    required = "required an SNS topic this stack declares, with at least one subscription (drtopo:notifications.alerts)"
    expected = [
        f"MetricAlarm 'dns-takeover': {prop} = 'dns-alerts'; {required} (topic 'dns-alerts' has no subscription)"
        for prop in ("alarmActions", "okActions")
    ]
    assert reported == ([] if subscribed else expected)
