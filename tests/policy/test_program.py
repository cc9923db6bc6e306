"""The whole program, evaluated under Pulumi mocks for both stacks in both roles, breaks no rule; weakened
settings (passed as overrides, as a careless edit of Pulumi.<stack>.yaml would) are caught with readable messages."""

from __future__ import annotations

import json
from functools import cache

import pytest

from drtopo.naming import incident_topic_name
from drtopo.settings import Role, load_settings, stacks
from evaluation.mock_program import ACCOUNT_ID
from policies import resource_types as t
from policies.engine import evaluate_rules
from policies.model import Resource
from tests.evaluations import program_resources
from tests.policy.stacks import broken


@cache
def program(stack: str, overrides: str = "") -> tuple[Resource, ...]:
    return tuple(program_resources(load_settings(stack, overrides=json.loads(overrides) if overrides else None)))


def messages(stack: str, overrides: dict) -> list[str]:
    key = json.dumps(overrides, sort_keys=True)
    return [v.message for v in evaluate_rules(program(stack, key), load_settings(stack, overrides=overrides))]


@pytest.mark.parametrize("role", [r.value for r in Role])
@pytest.mark.parametrize("stack", stacks())
def test_program_breaks_no_rule(stack: str, role: str) -> None:
    overrides = {"role": role}
    resources = program(stack, json.dumps(overrides, sort_keys=True))
    assert len(resources) > 40
    assert messages(stack, overrides) == []


@pytest.mark.parametrize("role", [r.value for r in Role])
@pytest.mark.parametrize("stack", stacks())
def test_program_with_workload_identity_breaks_no_rule(stack: str, role: str) -> None:
    kubernetes = load_settings(stack).kubernetes.model_dump(mode="json", by_alias=True, exclude_none=True)
    overrides = {"role": role, "kubernetes": {**kubernetes, "oidcIssuer": "oidc.eks.us-east-1.amazonaws.com/id/EX"}}
    resources = program(stack, json.dumps(overrides, sort_keys=True))
    # replication + one per backup job + the readiness check's + AWS Backup's for the volumes
    assert len([r for r in resources if r.type == t.IAM_ROLE]) == 5
    assert messages(stack, overrides) == []


@pytest.mark.parametrize("prod_role", [r.value for r in Role])
def test_exactly_one_primary_record_across_the_stacks_in_every_pair_of_roles(prod_role: str) -> None:
    dr_role = Role.STANDBY.value if prod_role == Role.PRIMARY.value else Role.PRIMARY.value
    failover = [
        policy["type"]
        for stack, role in (("prod", prod_role), ("dr", dr_role))
        for r in program(stack, json.dumps({"role": role}, sort_keys=True))
        if r.type == t.ROUTE53_RECORD
        for policy in r.inputs.get("failoverRoutingPolicies", [])
    ]
    assert sorted(failover) == ["PRIMARY", "SECONDARY"]


def test_rules_see_every_kind_of_resource_they_govern() -> None:
    """Guards against rules passing vacuously because the program's types drifted from the rules' tokens."""
    present = {r.type for r in program("dr", json.dumps({"role": "standby"}))}
    governed = {
        t.BUCKET, t.BUCKET_VERSIONING, t.BUCKET_SSE, t.BUCKET_PUBLIC_ACCESS_BLOCK, t.BUCKET_POLICY,
        t.BUCKET_LIFECYCLE, t.BUCKET_OBJECT_LOCK, t.BUCKET_REPLICATION, t.KMS_KEY, t.RDS_INSTANCE,
        t.RDS_PARAMETER_GROUP, t.METRIC_ALARM, t.ROUTE53_RECORD, t.ROUTE53_HEALTH_CHECK, t.K8S_CRONJOB,
        t.K8S_DEPLOYMENT, t.K8S_CONFIGMAP, t.SNS_TOPIC, t.SNS_TOPIC_SUBSCRIPTION,
    }  # fmt: skip
    assert governed - present == set()


def test_daily_retention_of_one_day_is_caught() -> None:
    found = messages("prod", {"retention": {"daily": {"days": 1}}})
    assert (
        "BucketLifecycleConfiguration 'backups-dumps': rules[0].expiration.days = 1; required == 30 "
        "(daily tier: settings 1 days, runbook at least 30)"
    ) in found


def test_rpo_of_one_minute_with_a_five_minute_lag_alarm_is_caught() -> None:
    weakened = {"objectives": {"regionFailure": {"rtoMinutes": 240, "rpoMinutes": 1}}, "database": {}}
    assert load_settings("dr", overrides=weakened).database.replica_lag_alarm_seconds == 300
    found = messages("dr", weakened)
    assert "MetricAlarm 'database-replica-lag': threshold = 300; required < 60 seconds (database RPO 1 min)" in found


def test_replication_time_of_thirty_minutes_is_caught() -> None:
    """S3 RTC offers 15 minutes only, so no setting produces 30: weaken the program's own resource instead."""
    settings = load_settings("prod")
    resources = list(program("prod", json.dumps({"role": "primary"}, sort_keys=True)))
    replication = next(r for r in resources if r.type == t.BUCKET_REPLICATION)
    path = "rules[0].destination.replicationTime.time.minutes"
    found = [v.message for v in evaluate_rules(broken(resources, t.BUCKET_REPLICATION, replication.name, path, 30.0),
                                               settings)]  # fmt: skip
    assert (
        f"BucketReplicationConfig '{replication.name}': rules[0].destination.replicationTime = 30; "
        "required <= 15 minutes (region-failure RPO 15 min)"
    ) in found


def test_an_rpo_stricter_than_replication_time_control_is_caught() -> None:
    found = messages("prod", {"objectives": {"regionFailure": {"rtoMinutes": 240, "rpoMinutes": 10}}})
    assert any("replicationTime = 15; required <= 10 minutes (region-failure RPO 10 min)" in m for m in found)


@pytest.mark.parametrize(
    ("stack", "overrides", "expected"),
    [
        ("prod", {"retention": {"auditYears": 5}}, "rule.defaultRetention.years = '5 years'; required >= 7 years"),
        ("prod", {"database": {"backupRetentionDays": 3}}, "backupRetentionPeriod = 3; required >= 7 days"),
        (
            "dr",
            {"kafka": {"bootstrapServers": "k1:9092", "peerBootstrapServers": "k0:9092",
                       "mirror": {"syncGroupOffsetsIntervalSeconds": 900}}},
            "us-east-1->us-west-2.sync.group.offsets.interval.seconds = '900'; required <= 300 (Kafka RPO 5 min)",
        ),
        (
            "prod",
            {"objectives": {"regionFailure": {"rtoMinutes": 20, "rpoMinutes": 15}},
             "dns": {"zoneName": "z.example", "recordName": "api.z.example", "endpoint": "e.z.example",
                     "requestIntervalSeconds": 30, "failureThreshold": 10}},
            "requestInterval x failureThreshold = '30 s x 10 = 300 s'; required <= 120 s",
        ),
    ],
    ids=["audit-5-years", "pitr-3-days", "offset-sync-15-minutes", "dns-detection-5-minutes"],
)  # fmt: skip
def test_other_weakened_settings_are_caught(stack: str, overrides: dict, expected: str) -> None:
    found = messages(stack, overrides)
    assert any(expected in m for m in found), found


@pytest.mark.parametrize("prod_role", [r.value for r in Role])
def test_an_incident_topic_with_a_subscriber_in_both_regions_in_every_pair_of_roles(prod_role: str) -> None:
    dr_role = Role.STANDBY.value if prod_role == Role.PRIMARY.value else Role.PRIMARY.value
    found = {}
    for stack, role in (("prod", prod_role), ("dr", dr_role)):
        resources = program(stack, json.dumps({"role": role}, sort_keys=True))
        region = load_settings(stack).region
        topic = next(
            r for r in resources if r.type == t.SNS_TOPIC and r.inputs.get("name") == incident_topic_name(region)
        )
        arn = f"arn:aws:sns:{region}:{ACCOUNT_ID}:{incident_topic_name(region)}"
        subscribers = [r.inputs["endpoint"] for r in resources if r.type == t.SNS_TOPIC_SUBSCRIPTION
                       and r.inputs["topic"] == arn]  # fmt: skip
        assert topic.inputs.get("region") in (None, region) and topic.inputs.get("kmsMasterKeyId")
        found[region] = subscribers
    assert found == {"us-east-1": ["incident-response@biopro.com"], "us-west-2": ["incident-response@biopro.com"]}


@pytest.mark.parametrize("stack", stacks())
def test_alarm_topics_without_a_subscriber_are_caught(stack: str) -> None:
    notifications = load_settings(stack).notifications.model_dump(mode="json", by_alias=True, exclude_none=True)
    found = messages(stack, {"notifications": {**notifications, "alerts": []}})
    region = load_settings(stack).region
    alarms = [r.name for r in program(stack) if r.type == t.METRIC_ALARM]
    expected = {
        f"MetricAlarm '{alarm}': {prop} = 'arn:aws:sns:{region}:{ACCOUNT_ID}:{topic}'; required an SNS topic this "
        f"stack declares, with at least one subscription (drtopo:notifications.alerts) (topic '{topic}' has no "
        "subscription)"
        for alarm in alarms
        for topic in (
            f"{alarm.split('-')[0]}-alerts" if not alarm.startswith("readiness") else "readiness-check-alerts",
        )
        for prop in ("alarmActions", "okActions")
    }
    assert len(alarms) >= 2 and expected <= set(found), found
