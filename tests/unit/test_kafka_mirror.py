"""The MirrorMaker 2 component as registered under Pulumi mocks, for both stacks and both roles."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from components.kafka_mirror import KafkaMirror, KafkaMirrorArgs
from drtopo.mm2_properties import render_mm2_properties
from drtopo.settings import Role, Settings, load_settings
from evaluation.mock_program import Evaluation, Registered, evaluate
from tests.k8s_schema import validate_manifest

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"


def build(settings: Settings) -> dict[str, Any]:
    KafkaMirror("kafka-mirror", KafkaMirrorArgs(settings))
    return {}


def run(stack: str, role: Role | None = None) -> Evaluation:
    overrides = {"role": role.value} if role else None
    return evaluate(load_settings(stack, overrides=overrides), build=build)


@pytest.fixture(scope="module", params=["prod", "dr"])
def stack(request: pytest.FixtureRequest) -> Evaluation:
    return run(request.param)


def pod_spec(ev: Evaluation) -> dict[str, Any]:
    return ev.one(DEPLOYMENT).get("spec.template.spec")


def container(ev: Evaluation) -> dict[str, Any]:
    (only,) = pod_spec(ev)["containers"]
    return only


def test_every_object_is_a_valid_kubernetes_manifest_in_the_namespace(stack: Evaluation) -> None:
    objects = [r for r in stack.resources if r.type.startswith("kubernetes:")]
    assert sorted(r.type for r in objects) == sorted([DEPLOYMENT, CONFIG_MAP, SERVICE_ACCOUNT])
    for obj in objects:
        validate_manifest(obj.inputs)
        assert obj.get("metadata.namespace") == stack.settings.kubernetes.namespace


def test_children_are_parented_to_the_component(stack: Evaluation) -> None:
    component = stack.one("drtopo:kafka:KafkaMirror")
    assert all(r.parent_urn == component.urn for r in stack.resources if r.type.startswith("kubernetes:"))


@pytest.mark.parametrize(("stack_name", "role", "replicas"), [("prod", None, 0), ("dr", None, 1)])
def test_replicas_follow_the_role(stack_name: str, role: Role | None, replicas: int) -> None:
    assert run(stack_name, role).one(DEPLOYMENT).get("spec.replicas") == replicas


def test_config_map_holds_exactly_the_rendered_properties(stack: Evaluation) -> None:
    data = stack.one(CONFIG_MAP).get("data")
    assert data == {"mm2.properties": render_mm2_properties(stack.settings)}


def test_deployment_runs_dedicated_mirror_maker_on_the_mounted_properties(stack: Evaluation) -> None:
    spec = pod_spec(stack)
    main = container(stack)
    assert main["image"] == stack.settings.kubernetes.mirror_maker_image
    assert main["command"] == ["/opt/kafka/bin/connect-mirror-maker.sh", "/etc/mm2/mm2.properties"]
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["config"]["mountPath"] == "/etc/mm2" and mounts["config"]["readOnly"] is True
    assert volumes["config"]["configMap"]["name"] == stack.one(CONFIG_MAP).get("metadata.name")
    assert spec["serviceAccountName"] == stack.one(SERVICE_ACCOUNT).get("metadata.name")
    selector = stack.one(DEPLOYMENT).get("spec.selector.matchLabels")
    assert selector.items() <= stack.one(DEPLOYMENT).get("spec.template.metadata.labels").items()


def test_pod_is_locked_down_with_resources_and_a_liveness_probe(stack: Evaluation) -> None:
    spec, main = pod_spec(stack), container(stack)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert set(main["resources"]) == {"requests", "limits"}
    for kind in ("requests", "limits"):
        assert set(main["resources"][kind]) == {"cpu", "memory"}
    assert main["livenessProbe"]["exec"]["command"]
    # Every path the JVM writes (logs, /tmp) is a volume, since the root filesystem is read-only.
    log_dir = next(e["value"] for e in main["env"] if e["name"] == "LOG_DIR")
    assert any(log_dir.startswith(m["mountPath"] + "/") for m in main["volumeMounts"] if not m.get("readOnly"))


def test_service_account_mounts_no_token(stack: Evaluation) -> None:
    assert stack.one(SERVICE_ACCOUNT).get("automountServiceAccountToken") is False


def test_properties_checksum_rolls_the_pod_on_a_config_change(stack: Evaluation) -> None:
    annotations = stack.one(DEPLOYMENT).get("spec.template.metadata.annotations")
    text = stack.one(CONFIG_MAP).get("data")["mm2.properties"]
    assert annotations["drtopo.io/mm2-properties-sha256"] == hashlib.sha256(text.encode()).hexdigest()


def identity(r: Registered) -> tuple[str, str, str, str]:
    return r.type, r.urn, r.get("metadata.name", ""), r.get("metadata.namespace", "")


def test_role_switch_keeps_every_name_and_flips_replicas_and_properties() -> None:
    standby, primary = run("dr", Role.STANDBY), run("dr", Role.PRIMARY)
    assert [identity(r) for r in standby.resources] == [identity(r) for r in primary.resources]
    assert (standby.one(DEPLOYMENT).get("spec.replicas"), primary.one(DEPLOYMENT).get("spec.replicas")) == (1, 0)
    checksum = "spec.template.metadata.annotations"
    assert standby.one(DEPLOYMENT).get(checksum) != primary.one(DEPLOYMENT).get(checksum)
