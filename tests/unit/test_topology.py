"""The whole program: what it exports, how its components are built, and that its Kubernetes objects are valid."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from drtopo.outputs import OUTPUT_KEYS, StackOutputs, outputs_document, region_service_url
from drtopo.settings import PROJECT, load_settings
from evaluation.mock_program import Evaluation, evaluate
from tests.k8s_schema import validate_manifest

MAIN = Path(__file__).resolve().parents[2] / "__main__.py"
COMPONENTS = {
    "drtopo:storage:BackupStorage",
    "drtopo:database:Database",
    "drtopo:dns:DnsFailover",
    "drtopo:kafka:KafkaMirror",
    "drtopo:backup:BackupJobs",
}


def output_keys(required_only: bool) -> set[str]:
    fields = StackOutputs.model_fields
    return {field.alias or name for name, field in fields.items() if field.is_required() or not required_only}


def test_exports_cover_every_key_the_scripts_read(stack: Evaluation) -> None:
    assert output_keys(required_only=True) <= set(stack.exports)
    # selfManaged describes a PostgreSQL we run ourselves (the lab); RDS stacks never export it.
    assert output_keys(required_only=False) - set(stack.exports) == {"selfManaged"}


def test_exports_validate_as_stack_outputs(stack: Evaluation) -> None:
    settings = stack.settings
    outputs = StackOutputs.model_validate(stack.exports)
    assert (outputs.stack, outputs.role, outputs.region) == (settings.stack, settings.role.value, settings.region)
    assert outputs.peer_stack == settings.peer_stack and outputs.peer_region == settings.peer_region
    assert outputs.db_instance_id == f"exception-collector-{settings.region}"
    assert outputs.dump_bucket == f"drtopo-{settings.region}-dumps"
    assert outputs.audit_bucket == f"drtopo-{settings.region}-audit"
    assert outputs.failover == settings.role.failover
    assert outputs.set_identifier == settings.region
    assert outputs.kafka_bootstrap == settings.kafka.bootstrap_servers
    assert outputs.service_url == f"https://{settings.dns.record_name}"
    # Beside the record, this region's own endpoint (prod: api-us-east-1..., dr: api-us-west-2...).
    assert outputs.region_service_url == f"https://{settings.dns.endpoint}"
    assert settings.region in outputs.region_service_url
    assert stack.exports["objectives"]["regionFailure"] == {"rtoMinutes": 240, "rpoMinutes": 15}


def test_every_component_is_declared_once_and_every_resource_is_parented(stack: Evaluation) -> None:
    declared = [r.type for r in stack.resources if r.type.startswith("drtopo:")]
    assert set(declared) >= COMPONENTS
    for token in COMPONENTS:
        assert declared.count(token) == 1, token
    components = {r.urn for r in stack.resources if r.type.startswith("drtopo:")}
    for resource in stack.resources:
        if resource.type.startswith(("aws:", "kubernetes:")):
            assert resource.parent_urn, resource.name
            # Walk up to a drtopo component: nothing is declared loose in the stack.
            node = resource
            while node.parent_urn and node.urn not in components:
                node = stack.by_urn(node.parent_urn)
            assert node.urn in components, (resource.type, resource.name)


def test_stateful_resources_are_protected(stack: Evaluation) -> None:
    for token in ("aws:kms/key:Key", "aws:s3/bucket:Bucket", "aws:rds/instance:Instance"):
        found = stack.of_type(token)
        assert found, token
        assert all(r.protect for r in found), [r.name for r in found if not r.protect]


def test_every_kubernetes_object_validates_strictly(stack: Evaluation) -> None:
    # A patch is a partial object of a resource another owner declares: tests/unit/test_application.py checks it.
    objects = [r for r in stack.resources if r.type.startswith("kubernetes:") and not r.type.endswith("Patch")]
    kinds = {r.inputs["kind"] for r in objects}
    assert {"Deployment", "ConfigMap", "ServiceAccount", "CronJob", "Role", "RoleBinding"} <= kinds
    for resource in objects:
        validate_manifest(resource.inputs)


def test_backup_jobs_read_the_outputs_the_stack_exports(stack: Evaluation) -> None:
    config = stack.one("kubernetes:core/v1:ConfigMap", "backup-jobs-config").inputs["data"]
    outputs = StackOutputs.model_validate_json(config["outputs.json"])
    assert outputs.dump_bucket == stack.exports["dumpBucket"]
    assert outputs.db_arn == stack.exports["dbArn"]


@pytest.mark.parametrize("stack_name", ["prod", "dr"])
def test_main_declares_the_same_program(stack_name: str, program: Callable[[str, str | None], Evaluation]) -> None:
    def run_main(_settings: object) -> dict:
        runpy.run_path(str(MAIN), run_name="__main__")
        return {}

    ev = evaluate(load_settings(stack_name), build=run_main)
    assert sorted(r.urn for r in ev.resources) == sorted(r.urn for r in program(stack_name, None).resources)


def test_physical_names_never_collide_between_the_stacks(prod: Evaluation, dr: Evaluation) -> None:
    """Both stacks share one account: aliases are unique per region, buckets and DB identifiers per partition."""
    aliases: list[tuple[str, str]] = []
    names: list[str] = []
    for ev in (prod, dr):
        aliases += [
            (r.inputs.get("region") or ev.settings.region, r.inputs["name"]) for r in ev.of_type("aws:kms/alias:Alias")
        ]
        names += [r.inputs["bucket"] for r in ev.of_type("aws:s3/bucket:Bucket")]
        names += [r.inputs["identifier"] for r in ev.of_type("aws:rds/instance:Instance")]
        names += [r.inputs["name"] for r in ev.of_type("aws:rds/parameterGroup:ParameterGroup")]
        names += [r.inputs["name"] for r in ev.of_type("aws:sns/topic:Topic") if "name" in r.inputs]
    # 8 per stack: backups, database, copies, three alert topics (database, DNS, readiness), the incident topic,
    # the volume backups' vault
    assert len(aliases) == len(set(aliases)) == 16
    assert len(names) == len(set(names))


def test_the_standby_references_the_primary_stack_of_this_project(dr: Evaluation, prod: Evaluation) -> None:
    # The database's (the replica's source) and the readiness check's (the primary's outputs it reads).
    references = {r.name for r in dr.of_type("pulumi:pulumi:StackReference")}
    assert len(dr.of_type("pulumi:pulumi:StackReference")) == 2 and len(references) == 1
    assert references.pop().split("/")[1:] == [PROJECT, dr.settings.peer_stack]
    assert "dbArn" in prod.exports


def test_the_exports_are_exactly_the_outputs_schema(stack: Evaluation) -> None:
    """One schema: every key the program exports is a StackOutputs field and none is left out (selfManaged is
    the lab's and self-hosted PostgreSQL's only)."""
    assert set(stack.exports) == OUTPUT_KEYS - {"selfManaged"}
    outputs = StackOutputs.model_validate(stack.exports)
    assert outputs.db_kms_key_arn == stack.exports["dbKmsKeyArn"]
    assert outputs.objectives == stack.settings.objectives


def test_a_document_with_a_key_outside_the_schema_is_refused(stack: Evaluation) -> None:
    with pytest.raises(ValueError, match=r"unknown keys \['dbKmsKey'\]"):
        outputs_document(stack.settings, {"dbKmsKey": "arn:aws:kms:x"})


def broken_prod_file(key: str, value: object) -> str:
    """The prod stack file with `drtopo:<key>` (a mapping) given one more field."""
    document = yaml.safe_load((MAIN.parent / "Pulumi.prod.yaml").read_text())
    section, _, field = key.partition(".")
    config = document["config"]
    config[f"{PROJECT}:{section}"] = {**(config.get(f"{PROJECT}:{section}") or {}), field: value}
    return yaml.safe_dump(document)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- not\n- a mapping\n", "error: Pulumi.prod.yaml: the document is a list; expected a mapping with config:"),
        (
            broken_prod_file("kubernetes.dumpSchedule", "*/15 * * * *"),
            "error: Pulumi.prod.yaml: drtopo:kubernetes.dumpSchedule = '*/15 * * * *': schedule",
        ),
        (
            broken_prod_file("database.engineVersion", "banana"),
            "error: Pulumi.prod.yaml: drtopo:database.engineVersion = 'banana': expected a supported",
        ),
    ],
    ids=["list-document", "dump-schedule", "engine-version"],
)
def test_main_turns_bad_config_into_one_line_and_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    """Run the program file as the Pulumi host would, on a project whose prod stack file is broken."""
    (tmp_path / "Pulumi.prod.yaml").write_text(text)
    runner = (
        "import runpy, pulumi.runtime.settings as s; s._set_stack('prod'); "
        f"runpy.run_path({str(MAIN)!r}, run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", runner],
        capture_output=True,
        text=True,
        cwd=MAIN.parent,
        env={**os.environ, "DRTOPO_PROJECT_DIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith(expected), done.stderr


def test_every_kubernetes_object_goes_through_the_stacks_own_cluster(prod: Evaluation, dr: Evaluation) -> None:
    contexts = []
    for ev in (prod, dr):
        (provider,) = ev.of_type("pulumi:providers:kubernetes")
        assert provider.inputs == {"context": ev.settings.kubernetes.context}
        objects = [r for r in ev.resources if r.type.startswith("kubernetes:")]
        assert len(objects) == 16  # 11, the readiness check's three, the application's endpoints and patch
        assert {r.provider for r in objects} == {f"{provider.urn}::{provider.name}-id"}
        contexts.append(provider.inputs["context"])
    assert contexts == ["biopro-us-east-1", "biopro-us-west-2"]


@pytest.mark.parametrize(
    ("dns", "url"),
    [
        ({}, "https://api-us-west-2.exceptions.biopro.example"),
        ({"healthCheckType": "HTTP", "healthCheckPort": 80}, "http://api-us-west-2.exceptions.biopro.example"),
        ({"healthCheckType": "HTTP", "healthCheckPort": 8080}, "http://api-us-west-2.exceptions.biopro.example:8080"),
    ],
)
def test_the_region_service_url_is_where_the_health_check_reaches(dns: dict, url: str) -> None:
    settings = load_settings("dr")
    merged = {**settings.dns.model_dump(by_alias=True), **dns}
    assert region_service_url(load_settings("dr", overrides={"dns": merged})) == url
