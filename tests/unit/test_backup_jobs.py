"""The backup CronJobs as registered under Pulumi mocks: schedules, commands, limits, identities, RBAC and the
mounted configuration the jobs read, for both stacks and both roles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.backup_jobs import BackupJobs, BackupJobsArgs, required_output_keys
from drtopo.outputs import load_outputs
from drtopo.settings import Role, Settings, SettingsError, load_settings
from evaluation.mock_program import Evaluation, evaluate
from tests.k8s_schema import validate_manifest

CRON_JOB = "kubernetes:batch/v1:CronJob"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")


def stack_outputs(settings: Settings) -> dict[str, Any]:
    """Outputs as the program exports them (the non-secret ones), with plausible values."""
    values: dict[str, Any] = {key: f"{key}-value" for key in required_output_keys()}
    values.update(
        stack=settings.stack,
        role=settings.role.value,
        region=settings.region,
        peerRegion=settings.peer_region,
        peerStack=settings.peer_stack,
        dbPort=5432,
        dbPasswordSecretArn="arn:aws:secretsmanager:us-east-1:123456789012:secret:rds-db",
        namespace=settings.kubernetes.namespace,
    )
    return values


def build(settings: Settings) -> dict[str, Any]:
    BackupJobs("backup-jobs", BackupJobsArgs(settings, stack_outputs(settings)))
    return {}


def with_kubernetes(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"kubernetes": settings.kubernetes.model_copy(update=changes)})


def run(settings: Settings) -> Evaluation:
    return evaluate(settings, build=build)


@pytest.fixture(scope="module", params=["prod", "dr"])
def stack(request: pytest.FixtureRequest) -> Evaluation:
    return run(load_settings(request.param))


def job(ev: Evaluation, name: str) -> dict[str, Any]:
    return ev.one(CRON_JOB, name).inputs


def pod(ev: Evaluation, name: str) -> dict[str, Any]:
    return job(ev, name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def containers(ev: Evaluation) -> list[dict[str, Any]]:
    found = []
    for name in ("pg-dump", "config-export", "restore-test"):
        spec = pod(ev, name)
        found += spec.get("initContainers", []) + spec["containers"]
    return found


def test_every_object_is_a_valid_kubernetes_manifest_in_the_namespace(stack: Evaluation) -> None:
    objects = [r for r in stack.resources if r.type.startswith("kubernetes:")]
    assert len(objects) == 8
    component = stack.one("drtopo:backup:BackupJobs")
    for obj in objects:
        validate_manifest(obj.inputs)
        assert obj.get("metadata.namespace") == stack.settings.kubernetes.namespace
        assert obj.parent_urn == component.urn


def test_dump_runs_daily_then_verifies_the_latest_dump(stack: Evaluation) -> None:
    settings = stack.settings
    spec = pod(stack, "pg-dump")
    assert job(stack, "pg-dump")["spec"]["schedule"] == settings.kubernetes.dump_schedule
    common = ["--stack", settings.stack, "--outputs", "/etc/drtopo/outputs.json"]
    (dump,) = spec["initContainers"]
    (verify,) = spec["containers"]
    assert dump["command"] == ["python", "-m", "scripts.backup", "run", *common]
    assert verify["command"] == ["python", "-m", "scripts.backup", "verify", "--latest", *common]


def test_config_export_runs_on_its_schedule(stack: Evaluation) -> None:
    settings = stack.settings
    assert job(stack, "config-export")["spec"]["schedule"] == settings.kubernetes.resource_export_schedule
    (export,) = pod(stack, "config-export")["containers"]
    assert export["command"] == [
        *("python", "-m", "scripts.backup", "config"),
        *("--stack", settings.stack, "--outputs", "/etc/drtopo/outputs.json"),
    ]


@pytest.mark.parametrize("name", ["pg-dump", "config-export"])
def test_jobs_never_overlap_and_are_bounded_in_time_retries_and_history(stack: Evaluation, name: str) -> None:
    spec = job(stack, name)["spec"]
    job_spec = spec["jobTemplate"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert 0 < job_spec["activeDeadlineSeconds"] <= 24 * 3600
    assert 0 <= job_spec["backoffLimit"] <= 6
    assert job_spec["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


def test_dump_is_suspended_only_on_the_standby() -> None:
    for role in Role:
        ev = run(load_settings("dr", overrides={"role": role.value}))
        assert job(ev, "pg-dump")["spec"]["suspend"] is (role is Role.STANDBY)
        assert job(ev, "config-export")["spec"]["suspend"] is False


def test_role_switch_keeps_every_name() -> None:
    standby = run(load_settings("dr", overrides={"role": "standby"}))
    primary = run(load_settings("dr", overrides={"role": "primary"}))

    def names(ev: Evaluation) -> list[tuple[str, str, Any]]:
        return [(r.type, r.urn, r.get("metadata.name")) for r in ev.resources]

    assert names(standby) == names(primary)


def test_containers_run_locked_down_with_resources(stack: Evaluation) -> None:
    for name in ("pg-dump", "config-export"):
        security = pod(stack, name)["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    for c in containers(stack):
        assert c["image"] == stack.settings.kubernetes.backup_image
        assert c["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert set(c["resources"]["requests"]) == set(c["resources"]["limits"]) == {"cpu", "memory"}


def test_no_literal_secret_in_any_env_and_the_password_comes_from_the_secret(stack: Evaluation) -> None:
    secret = stack.settings.kubernetes.database_secret
    for c in containers(stack):
        for env in c["env"]:
            if any(word in env["name"] for word in SECRET_WORDS):
                assert "value" not in env, f"{c['name']} env {env['name']} is a literal"
        (password,) = [e for e in c["env"] if e["name"] == "PGPASSWORD"]
        assert password["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "password", "optional": False}


def test_workload_identity_annotates_both_accounts_and_makes_the_secret_optional() -> None:
    role_arn = "arn:aws:iam::123456789012:role/drtopo-backup"
    ev = run(with_kubernetes(load_settings("prod"), workload_role_arn=role_arn))
    for account in ev.of_type(SERVICE_ACCOUNT):
        assert account.get("metadata.annotations") == {"eks.amazonaws.com/role-arn": role_arn}
    for c in containers(ev):
        (password,) = [e for e in c["env"] if e["name"] == "PGPASSWORD"]
        assert password["valueFrom"]["secretKeyRef"]["optional"] is True


def test_each_job_has_its_own_account_and_only_the_export_talks_to_the_api(stack: Evaluation) -> None:
    accounts = {a.get("metadata.name"): a for a in stack.of_type(SERVICE_ACCOUNT)}
    assert pod(stack, "pg-dump")["serviceAccountName"] == "pg-dump"
    assert pod(stack, "config-export")["serviceAccountName"] == "config-export"
    assert accounts["pg-dump"].get("automountServiceAccountToken") is False
    assert accounts["config-export"].get("automountServiceAccountToken") is True
    assert not accounts["pg-dump"].get("metadata.annotations")


def test_export_role_is_read_only_and_excludes_secrets(stack: Evaluation) -> None:
    rules = stack.one(ROLE).get("rules")
    resources = {(group, res) for rule in rules for group in rule["apiGroups"] for res in rule["resources"]}
    assert ("", "configmaps") in resources and ("apps", "deployments") in resources
    assert not any(res in ("secrets", "*") or group == "*" for group, res in resources)
    assert all(sorted(rule["verbs"]) == ["get", "list"] for rule in rules if rule["resources"] != ["namespaces"])
    # The export checks its own namespace first: `get` on that namespace alone (a Role grants it by name).
    namespaces = [rule for rule in rules if "namespaces" in rule["resources"]]
    namespace = stack.settings.kubernetes.namespace
    assert namespaces == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"], "resourceNames": [namespace]}
    ]
    binding = stack.one(ROLE_BINDING)
    assert binding.get("roleRef") == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": stack.one(ROLE).get("metadata.name"),
    }
    assert binding.get("subjects") == [
        {"kind": "ServiceAccount", "name": "config-export", "namespace": stack.settings.kubernetes.namespace}
    ]


def test_mounted_config_loads_with_the_loaders_the_jobs_use(stack: Evaluation, tmp_path: Path) -> None:
    data = stack.one(CONFIG_MAP).get("data")
    for file_name, text in data.items():
        (tmp_path / file_name).write_text(text)
    settings = stack.settings
    assert load_settings(settings.stack, project_dir=tmp_path) == settings
    outputs = load_outputs(tmp_path / "outputs.json", settings.stack)
    assert outputs.namespace == settings.kubernetes.namespace and outputs.db_port == 5432
    assert json.loads(data["outputs.json"]) == stack_outputs(settings)
    for c in containers(stack):
        assert {"name": "DRTOPO_PROJECT_DIR", "value": "/etc/drtopo"} in c["env"]
        assert {"name": "drtopo", "mountPath": "/etc/drtopo", "readOnly": True} in c["volumeMounts"]


def test_outputs_must_be_complete_and_free_of_secret_values() -> None:
    settings = load_settings("prod")
    incomplete = {k: v for k, v in stack_outputs(settings).items() if k != "dumpBucket"}
    with pytest.raises(SettingsError, match=r"lack \['dumpBucket'\]"):
        BackupJobsArgs(settings, incomplete)
    with pytest.raises(SettingsError, match=r"\['dbPassword'\] may hold secret values"):
        BackupJobsArgs(settings, stack_outputs(settings) | {"dbPassword": "hunter2"})


def test_restore_test_runs_weekly_as_the_dump_account_on_the_primary(stack: Evaluation) -> None:
    settings = stack.settings
    cronjob = job(stack, "restore-test")
    assert cronjob["spec"]["schedule"] == settings.kubernetes.restore_test_schedule
    assert cronjob["spec"]["suspend"] is (not settings.is_primary)
    spec = pod(stack, "restore-test")
    assert spec["serviceAccountName"] == "pg-dump"
    (test,) = spec["containers"]
    assert test["command"] == [
        *("python", "-m", "scripts.backup", "restore-test", "--random"),
        *("--stack", settings.stack, "--outputs", "/etc/drtopo/outputs.json"),
    ]
