"""Workload identity of the backup jobs: one IRSA role per job with least privilege, credentials read in the region
the job runs in; and, without an OIDC issuer, the static Kubernetes Secret the lab's cluster uses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.backup_jobs import DUMP_JOB, EXPORT_JOB, WORKLOAD_ROLE_ANNOTATION
from components.identity import dump_policy, export_policy, secret_arn, trust_policy
from drtopo import naming
from drtopo.settings import Settings, SettingsError, load_settings
from evaluation.mock_program import ACCOUNT_ID, Evaluation
from tests.evaluations import evaluation_of

ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
CRONJOB = "kubernetes:batch/v1:CronJob"


def with_oidc(stack: str, role: str | None = None) -> Settings:
    kubernetes = load_settings(stack).kubernetes.model_dump(mode="json", by_alias=True, exclude_none=True)
    overrides: dict[str, Any] = {"kubernetes": {**kubernetes, "oidcIssuer": ISSUER}}
    if role:
        overrides["role"] = role
    return load_settings(stack, overrides=overrides)


@pytest.fixture(scope="module", params=[("prod", "primary"), ("prod", "standby"), ("dr", "standby"), ("dr", "primary")])
def irsa(request: pytest.FixtureRequest) -> Evaluation:
    stack, role = request.param
    return evaluation_of(with_oidc(stack, role))


def statements(document: str) -> list[dict[str, Any]]:
    return json.loads(document)["Statement"]


def test_trust_pins_the_service_account_and_the_audience() -> None:
    (statement,) = statements(trust_policy(ACCOUNT_ID, f"https://{ISSUER}/", "biopro-prod", "pg-dump"))
    assert statement["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER}"}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            f"{ISSUER}:sub": "system:serviceaccount:biopro-prod:pg-dump",
            f"{ISSUER}:aud": "sts.amazonaws.com",
        }
    }


def test_dump_policy_names_its_prefixes_its_key_and_its_secret() -> None:
    secret = secret_arn("us-west-2", ACCOUNT_ID, naming.db_secret_name("us-east-1"))
    assert secret == f"arn:aws:secretsmanager:us-west-2:{ACCOUNT_ID}:secret:drtopo/us-east-1/database/master-??????"
    found = {s["Sid"]: s for s in statements(dump_policy("us-west-2", "b", "arn:k", secret, "arn:db"))}
    assert found["ListDumps"]["Resource"] == "arn:aws:s3:::b"
    assert found["WriteAndReadDumps"]["Resource"] == [
        f"arn:aws:s3:::b/{t}/*" for t in ("daily", "weekly", "monthly", "yearly")
    ]
    assert "s3:DeleteObject" not in found["WriteAndReadDumps"]["Action"]
    assert found["BackupKeyThroughS3"]["Resource"] == "arn:k"
    assert found["BackupKeyThroughS3"]["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.us-west-2.amazonaws.com"}
    }
    assert found["ReadMasterSecret"]["Resource"] == secret
    assert found["SecretKeyThroughSecretsManager"]["Condition"]["StringEquals"]["kms:ViaService"] == (
        "secretsmanager.us-west-2.amazonaws.com"
    )
    for statement in found.values():
        assert not any("*" in a for a in statement["Action"])


def test_export_policy_writes_only_under_its_stacks_prefix() -> None:
    (write, key) = statements(export_policy("us-east-1", "cfg", "config/prod", "arn:k"))
    assert write["Resource"] == "arn:aws:s3:::cfg/config/prod/*"
    assert not any("secretsmanager" in a for s in (write, key) for a in s["Action"])


def test_the_config_prefix_is_the_one_the_export_writes() -> None:
    from drtopo.backup.config import stack_prefix

    assert naming.config_prefix("prod") == stack_prefix("prod")


def test_each_job_has_its_own_role_bound_to_its_service_account(irsa: Evaluation) -> None:
    settings = irsa.settings
    roles = {r.name: r for r in irsa.of_type(ROLE) if "WebIdentity" in r.inputs["assumeRolePolicy"]}
    readiness = "readiness-check-role"  # tests/unit/test_readiness_check.py
    assert set(roles) == {f"backup-jobs-{DUMP_JOB}-role", f"backup-jobs-{EXPORT_JOB}-role", readiness}
    for job in (DUMP_JOB, EXPORT_JOB):
        role = roles[f"backup-jobs-{job}-role"]
        assert role.inputs["name"] == f"drtopo-{settings.region}-{job}"
        (trust,) = statements(role.inputs["assumeRolePolicy"])
        assert trust["Condition"]["StringEquals"][f"{ISSUER}:sub"] == (
            f"system:serviceaccount:{settings.kubernetes.namespace}:{job}"
        )
        account = irsa.one(SERVICE_ACCOUNT, f"backup-jobs-{job}-sa")
        assert account.inputs["metadata"]["annotations"] == {WORKLOAD_ROLE_ANNOTATION: role.outputs["arn"]}
        assert irsa.by_urn(role.parent_urn).type == "drtopo:identity:WorkloadRole"


def test_jobs_read_credentials_in_their_own_region_and_no_kubernetes_secret(irsa: Evaluation) -> None:
    settings = irsa.settings
    dump = {s["Sid"]: s for s in statements(irsa.one(ROLE_POLICY, f"backup-jobs-{DUMP_JOB}-role").inputs["policy"])}
    source = settings.region if settings.is_primary else settings.peer_region
    assert dump["ReadMasterSecret"]["Resource"] == secret_arn(
        settings.region, ACCOUNT_ID, naming.db_secret_name(source)
    )
    assert dump["WriteAndReadDumps"]["Resource"][0] == f"arn:aws:s3:::{naming.bucket_name(settings, 'dumps')}/daily/*"
    for job in irsa.of_type(CRONJOB):
        assert "secretKeyRef" not in json.dumps(job.inputs), job.name
    assert irsa.exports["dbPasswordSecretArn"] in (
        naming.db_secret_name(source),
        irsa.one("aws:secretsmanager/secret:Secret").outputs["arn"],
    )


def test_without_an_issuer_the_jobs_keep_the_kubernetes_secret(stack: Evaluation) -> None:
    assert not [r for r in stack.of_type(ROLE) if "WebIdentity" in r.inputs["assumeRolePolicy"]]
    dump = stack.one(CRONJOB, f"backup-jobs-{DUMP_JOB}")
    env = dump.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0]["env"]
    (password,) = [e for e in env if e["name"] == "PGPASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == stack.settings.kubernetes.database_secret


def test_a_bad_issuer_is_refused_naming_the_key() -> None:
    kubernetes = load_settings("prod").kubernetes.model_dump(mode="json", by_alias=True, exclude_none=True)
    with pytest.raises(SettingsError, match="oidcIssuer"):
        load_settings("prod", overrides={"kubernetes": {**kubernetes, "oidcIssuer": "not an issuer!"}})
