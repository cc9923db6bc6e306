"""The scheduled readiness check as registered under Pulumi mocks: declared by the standby only (whichever stack it
is), hourly, as its own ServiceAccount with the backup jobs' pod security and image, reading both stacks' outputs and
stack files; with workload identity its own least-privilege IAM role; the alarm on what `--publish` puts, routed to
a subscribed alert topic; and the readiness rules catching a widened policy or a weakened alarm."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from components.backup_jobs import BACKUP_UID
from components.readiness_check import readiness_policy
from drtopo import cron
from drtopo.readiness import publish, schedule
from drtopo.settings import load_settings
from evaluation.mock_program import ACCOUNT_ID, PRIMARY_OUTPUTS, Evaluation
from policies import resource_types as t
from policies.engine import evaluate_rules
from policies.model import Resource
from tests.evaluations import evaluation_of, program_resources
from tests.k8s_schema import validate_manifest

CRON_JOB = "kubernetes:batch/v1:CronJob"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
ISSUER = "oidc.eks.us-west-2.amazonaws.com/id/EX"


def with_identity(stack: str) -> dict[str, Any]:
    kubernetes = load_settings(stack).kubernetes.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {"kubernetes": {**kubernetes, "oidcIssuer": ISSUER}}


@cache
def evaluated(stack: str, role: str | None = None, identity: bool = False) -> Evaluation:
    overrides = {**({"role": role} if role else {}), **(with_identity(stack) if identity else {})}
    return evaluation_of(load_settings(stack, overrides=overrides or None))


def readiness_objects(ev: Evaluation) -> list[Any]:
    return [r for r in ev.resources if r.name.startswith("readiness-check")]


def pod(ev: Evaluation) -> dict[str, Any]:
    return ev.one(CRON_JOB, "readiness-check").inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("stack", "role", "runs"),
    [("dr", None, True), ("prod", None, False), ("prod", "standby", True), ("dr", "primary", False)],
)
def test_only_the_standby_runs_the_check_and_alarms_on_its_silence(stack: str, role: str | None, runs: bool) -> None:
    # Both roles declare it (a role switch removes nothing), as both declare the dump job.
    ev = evaluated(stack, role)
    (job,) = [j for j in ev.of_type(CRON_JOB) if j.get("metadata.name") == schedule.JOB]
    (alarm,) = [a for a in ev.of_type(t.METRIC_ALARM) if a.get("name") == schedule.alarm_name(stack)]
    assert job.get("spec.suspend") is (not runs)
    assert alarm.get("treatMissingData") == ("breaching" if runs else "notBreaching")


def test_the_job_runs_status_publish_hourly_as_its_own_account_with_the_backup_jobs_pod_security() -> None:
    ev = evaluated("dr")
    settings = ev.settings
    job = ev.one(CRON_JOB, "readiness-check").inputs
    for obj in (job, ev.one(CONFIG_MAP, "readiness-check").inputs, ev.one(SERVICE_ACCOUNT, "readiness-check").inputs):
        validate_manifest(obj)
        assert obj["metadata"]["namespace"] == settings.kubernetes.namespace
    spec = job["spec"]
    assert spec["schedule"] == schedule.SCHEDULE and spec["concurrencyPolicy"] == "Forbid" and not spec["suspend"]
    minutes, hours, *_ = cron.parse(spec["schedule"])
    assert len(minutes) == 1 and hours == set(range(24)) and cron.runs_every_day(spec["schedule"])
    template = pod(ev)
    (container,) = template["containers"]
    assert container["command"] == [
        "python",
        "-m",
        "scripts.status",
        "--stack",
        "dr",
        "--outputs",
        "/etc/drtopo/dr.json",
        "--publish",
    ]
    assert container["image"] == settings.kubernetes.backup_image
    assert template["serviceAccountName"] == schedule.JOB and template["automountServiceAccountToken"] is False
    assert template["securityContext"]["runAsNonRoot"] is True
    assert template["securityContext"]["runAsUser"] == BACKUP_UID
    assert template["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"]
    # An item at risk (exit 1) or bad input (2) is the run's verdict: the Job fails without a retry.
    (rule,) = job["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [1, 2]
    assert rule["onExitCodes"]["containerName"] == container["name"]
    account = ev.one(SERVICE_ACCOUNT, "readiness-check").inputs
    assert account["metadata"]["name"] == schedule.JOB and account["automountServiceAccountToken"] is False
    assert not account["metadata"].get("annotations")  # no workload identity configured for dr
    env = {e["name"]: e for e in container["env"]}
    assert env["DRTOPO_PROJECT_DIR"]["value"] == schedule.CONFIG_DIR
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == settings.kubernetes.database_secret
    assert not any("value" in e and "PASSWORD" in e["name"] for e in container["env"])


def test_the_config_map_holds_both_stacks_outputs_and_stack_files_as_status_reads_them(tmp_path: Path) -> None:
    ev = evaluated("dr")
    data = ev.one(CONFIG_MAP, "readiness-check").inputs["data"]
    assert sorted(data) == ["Pulumi.dr.yaml", "Pulumi.prod.yaml", "dr.json", "prod.json"]
    assert json.loads(data["dr.json"]) == json.loads(json.dumps(ev.exports))
    # The primary's outputs through the StackReference the standby already names (primaryStackReference).
    assert json.loads(data["prod.json"]) == PRIMARY_OUTPUTS
    for name in ("Pulumi.dr.yaml", "Pulumi.prod.yaml"):
        (tmp_path / name).write_text(data[name])
    assert load_settings("dr", tmp_path) == load_settings("dr")
    assert load_settings("prod", tmp_path).role == load_settings("prod").role
    volumes = {v["name"]: v for v in pod(ev)["volumes"]}
    assert volumes["drtopo"]["configMap"]["name"] == schedule.CONFIG_MAP


def statements(document: str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in json.loads(document)["Statement"]}


def test_with_workload_identity_the_check_has_its_own_role_trusting_only_its_account() -> None:
    ev = evaluated("dr", identity=True)
    role = ev.one("aws:iam/role:Role", "readiness-check")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"]
    assert trust[f"{ISSUER}:sub"] == f"system:serviceaccount:{ev.settings.kubernetes.namespace}:{schedule.JOB}"
    account = ev.one(SERVICE_ACCOUNT, "readiness-check").inputs
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role.outputs["arn"]
    env = {e["name"] for e in pod(ev)["containers"][0]["env"]}
    assert "PGPASSWORD" not in env  # the master secret through the role instead
    policy = ev.one("aws:iam/rolePolicy:RolePolicy", "readiness-check").inputs["policy"]
    found = statements(policy)
    config = ev.exports["configBucket"]
    assert found["WriteReadiness"]["Resource"] == f"arn:aws:s3:::{config}/readiness/dr/*"
    assert found["OwnBackupKeyThroughS3"]["Resource"] == ev.exports["kmsKeyArn"]


def test_the_policy_writes_only_its_readiness_objects_and_metrics_and_reads_what_status_reads() -> None:
    settings = load_settings("dr")
    found = statements(readiness_policy(settings, ACCOUNT_ID, "drtopo-us-west-2-config", "arn:aws:kms:k"))
    actions = {a for s in found.values() for a in s["Action"]}
    writes = {a for a in actions if a.split(":")[1].startswith(("Put", "Delete", "Create", "Update", "Generate"))}
    assert writes == {"s3:PutObject", "cloudwatch:PutMetricData", "kms:GenerateDataKey"}
    assert found["WriteReadiness"]["Action"] == ["s3:PutObject"]
    assert found["WriteReadiness"]["Resource"] == "arn:aws:s3:::drtopo-us-west-2-config/readiness/dr/*"
    assert found["PutReadinessMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": publish.NAMESPACE}}
    assert {sid for sid, s in found.items() if s["Resource"] == "*"} == {"ReadReplicaLag", "PutReadinessMetrics"}
    # The primary's dumps and WAL (in its region), its master secret in both regions, the marker in both.
    assert "arn:aws:s3:::drtopo-us-east-1-dumps" in found["ListBuckets"]["Resource"]
    assert all(r.startswith("arn:aws:s3:::drtopo-us-east-1-wal/") for r in found["ReadPrimaryWal"]["Resource"])
    secret = "secret:drtopo/us-east-1/database/master-??????"
    assert sorted(found["ReadPrimaryMasterSecret"]["Resource"]) == [
        f"arn:aws:secretsmanager:{r}:{ACCOUNT_ID}:{secret}" for r in ("us-east-1", "us-west-2")
    ]
    assert found["ReadRoleMarker"]["Resource"] == [
        f"arn:aws:ssm:{r}:{ACCOUNT_ID}:parameter/drtopo/roles/dr/prod" for r in ("us-west-2", "us-east-1")
    ]
    for sid, statement in found.items():
        if any(a.startswith("kms:") for a in statement["Action"]):
            assert statement["Condition"]["StringEquals"]["kms:ViaService"].endswith(".amazonaws.com"), sid


def test_the_alarm_watches_what_publish_puts_treats_silence_as_breaching_and_notifies_a_subscribed_topic() -> None:
    ev = evaluated("dr")
    alarm = ev.one(t.METRIC_ALARM, "readiness-check").inputs
    assert (alarm["namespace"], alarm["metricName"]) == (publish.NAMESPACE, publish.FAILING_METRIC)
    assert alarm["dimensions"] == {"Stack": "dr"}
    assert alarm["treatMissingData"] == "breaching"
    assert alarm["threshold"] == 1 and alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert schedule.SCHEDULE_INTERVAL_SECONDS < alarm["period"] < 2 * schedule.SCHEDULE_INTERVAL_SECONDS
    topic = ev.one("aws:sns/topic:Topic", "readiness-check-alerts")
    assert alarm["alarmActions"] == alarm["okActions"] == [topic.outputs["arn"]]
    subscriptions = [s for s in ev.of_type("aws:sns/topicSubscription:TopicSubscription") if "readiness" in s.name]
    assert [s.inputs["endpoint"] for s in subscriptions] == [s.endpoint for s in ev.settings.notifications.alerts]
    # One failing item of a run: the datum the alarm watches is 1 under the alarm's dimensions.
    document = {"checks": [{"name": "replica.lag", "outcome": "fail"}, {"name": "roles", "outcome": "pass"}]}
    data = publish.metric_data(document, "dr", datetime.now(UTC))
    (total,) = [d for d in data if d["MetricName"] == alarm["metricName"]]
    assert total["Value"] >= alarm["threshold"]
    assert {d["Name"]: d["Value"] for d in total["Dimensions"]} == alarm["dimensions"]


@cache
def identity_resources() -> tuple[Resource, ...]:
    return tuple(program_resources(load_settings("dr", overrides=with_identity("dr"))))


def violations(resources: list[Resource], rule: str) -> list[str]:
    settings = load_settings("dr", overrides=with_identity("dr"))
    return [v.message for v in evaluate_rules(resources, settings) if v.rule == rule]


def widened(statement: dict[str, Any]) -> list[Resource]:
    """The program's resources with `statement` added to the readiness role's policy."""
    resources = list(identity_resources())
    for i, r in enumerate(resources):
        if r.type == t.IAM_ROLE_POLICY and r.name.startswith("readiness-check"):
            document = json.loads(r.inputs["policy"])
            document["Statement"].append({"Effect": "Allow", **statement})
            resources[i] = replace(r, inputs={**r.inputs, "policy": json.dumps(document)})
    return resources


def test_the_declared_policy_passes_the_readiness_rules() -> None:
    resources = list(identity_resources())
    assert violations(resources, "readiness-role-least-privilege") == []
    assert violations(resources, "readiness-check-scheduled") == []
    assert violations(resources, "iam-job-roles-least-privilege") == []


@pytest.mark.parametrize(
    ("statement", "caught"),
    [
        ({"Sid": "X", "Action": ["s3:DeleteObject"], "Resource": "arn:aws:s3:::drtopo-us-west-2-config/x/*"}, "Action"),
        ({"Sid": "X", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::drtopo-us-west-2-config/*"}, "Resource"),
        (
            {"Sid": "X", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::drtopo-us-east-1-dumps/daily/*"},
            "Resource",
        ),
        ({"Sid": "X", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::someone-elses/*"}, "Resource"),
        ({"Sid": "X", "Action": ["cloudwatch:PutMetricData"], "Resource": "*"}, "Condition.cloudwatch:namespace"),
        ({"Sid": "X", "Action": ["s3:*"], "Resource": "arn:aws:s3:::drtopo-us-west-2-config/readiness/dr/*"}, "Action"),
        ({"Sid": "X", "Action": ["ssm:GetParameter"], "Resource": "*"}, "Resource"),
        (
            {"Sid": "X", "Action": ["kms:Decrypt"], "Resource": "arn:aws:kms:us-west-2:1:key/k"},
            "Condition.kms:ViaService",
        ),
    ],
)
def test_a_widened_readiness_policy_is_caught(statement: dict[str, Any], caught: str) -> None:
    found = violations(widened(statement), "readiness-role-least-privilege")
    assert len(found) == 1 and f"Statement[X].{caught}" in found[0], found


def test_a_standby_without_the_check_or_with_an_alarm_that_ignores_silence_is_caught() -> None:
    resources = list(identity_resources())
    without_job = [r for r in resources if not (r.type == t.K8S_CRONJOB and r.name == "readiness-check")]
    assert any(f"CronJob {schedule.JOB}" in m for m in violations(without_job, "readiness-check-scheduled"))
    quiet = [
        replace(r, inputs={**r.inputs, "treatMissingData": "notBreaching"})
        if r.type == t.METRIC_ALARM and r.name.startswith("readiness-check")
        else r
        for r in resources
    ]
    (message,) = violations(quiet, "readiness-check-scheduled")
    assert "treatMissingData" in message and "breaching" in message


def test_the_lab_mounts_its_own_files_and_runs_the_check_only_on_demand() -> None:
    from lab.kube_objects import PodView, lab_object

    ev = evaluated("dr")
    files = {"dr.json": "{}", "prod.json": "{}", "Pulumi.dr.yaml": "config: {}", "Pulumi.prod.yaml": "config: {}"}
    view = PodView(images={ev.settings.kubernetes.backup_image: "drtopo.lab/backup:x"}, readiness_files=files)
    job = lab_object(ev.one(CRON_JOB, "readiness-check").inputs, view)
    assert job["spec"]["suspend"] is True  # never on the hour in a test session: `kubectl create job --from` runs it
    assert job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] == "drtopo.lab/backup:x"
    assert lab_object(ev.one(CONFIG_MAP, "readiness-check").inputs, view)["data"] == files
    # The program's own declaration is unchanged without the lab's view.
    assert lab_object(ev.one(CRON_JOB, "readiness-check").inputs)["spec"]["suspend"] is False
