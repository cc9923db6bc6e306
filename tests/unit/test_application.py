"""The application's DR state (components/application.py) under Pulumi mocks: the replica patch per role under
drtopo's own field manager, the endpoints ConfigMap of the region, and the settings that choose them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from components.application import (
    FIELD_MANAGER,
    FIELD_MANAGER_ANNOTATION,
    FORCE_ANNOTATION,
    application_namespace,
    replicas_for,
)
from drtopo.settings import REPO_DIR, Role, SettingsError, load_settings, settings_from_config
from evaluation.mock_program import Evaluation
from tests.evaluations import evaluation_of
from tests.k8s_schema import validate_manifest

PATCH = "kubernetes:apps/v1:DeploymentPatch"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


def stack_config(stack: str) -> dict[str, Any]:
    return yaml.safe_load((REPO_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]


def with_application(stack: str, application: dict[str, Any], role: str | None = None) -> Evaluation:
    overrides: dict[str, Any] = {"application": application}
    if role:
        overrides["role"] = role
    return evaluation_of(load_settings(stack, overrides=overrides))


def chart_deployment(name: str, namespace: str) -> dict[str, Any]:
    """What the application's chart declares (the object the patch lands on), with no replica count."""
    match = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": match},
            "template": {"metadata": {"labels": match}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}},
        },
    }


@pytest.mark.parametrize(
    ("stack", "role", "replicas"),
    [("prod", None, 3), ("dr", None, 0), ("dr", "primary", 3), ("prod", "standby", 0)],
)
def test_the_patch_sets_the_roles_replicas_under_drtopos_field_manager(
    program: Any, stack: str, role: str | None, replicas: int
) -> None:
    ev: Evaluation = program(stack, role)
    patch = ev.one(PATCH)
    settings = ev.settings
    assert patch.get("metadata.name") == settings.application.deployment
    assert patch.get("metadata.namespace") == settings.kubernetes.namespace
    assert patch.get("metadata.annotations") == {
        FIELD_MANAGER_ANNOTATION: FIELD_MANAGER,
        FORCE_ANNOTATION: "true",
        "drtopo.io/role": settings.role.value,
    }
    # Only the count: the chart keeps every other field, so a role switch never rolls the pods.
    assert patch.get("spec") == {"replicas": replicas}
    assert set(patch.inputs) == {"apiVersion", "kind", "metadata", "spec"}
    merged = chart_deployment(patch.get("metadata.name"), patch.get("metadata.namespace"))
    merged["spec"]["replicas"] = int(patch.get("spec.replicas"))
    validate_manifest(merged)


def test_warm_standby_and_a_named_namespace_come_from_settings() -> None:
    application = {"standbyReplicas": 2, "primaryReplicas": 4, "namespace": "collector", "deployment": "iec"}
    dr = with_application("dr", application)
    patch = dr.one(PATCH)
    assert (patch.get("metadata.name"), patch.get("metadata.namespace"), patch.get("spec.replicas")) == (
        "iec",
        "collector",
        2,
    )
    assert dr.one(CONFIG_MAP, "application-endpoints").get("metadata.namespace") == "collector"
    promoted = with_application("dr", application, role="primary")
    assert promoted.one(PATCH).get("spec.replicas") == 4
    # A role switch changes only the count (and the role annotation), never the URN: the same patch updates.
    assert promoted.one(PATCH).urn == patch.urn


def test_the_endpoints_are_this_regions_writer_and_kafka(stack: Evaluation) -> None:
    config = stack.one(CONFIG_MAP, "application-endpoints")
    settings = stack.settings
    assert config.get("metadata.name") == settings.application.endpoints_config_map
    assert config.get("data") == {
        "DRTOPO_REGION": settings.region,
        "DATABASE_WRITER_HOST": stack.exports["dbAddress"],
        "DATABASE_WRITER_PORT": "5432",
        "DATABASE_NAME": settings.database.name,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "KAFKA_CLUSTER_ALIAS": settings.region,
        # The cluster a Kafka failover moves the application to (restore kafka-failover).
        "KAFKA_BACKUP_BOOTSTRAP_SERVERS": settings.kafka.peer_bootstrap_servers,
        "KAFKA_BACKUP_CLUSTER_ALIAS": settings.peer_region,
        "KAFKA_CONSUMER_GROUP": settings.kafka.consumer_group,
    }
    assert settings.region in stack.exports["dbAddress"]  # this region's own instance
    validate_manifest(config.inputs)


def test_replicas_for_each_role() -> None:
    settings = load_settings("dr", overrides={"application": {"primaryReplicas": 5, "standbyReplicas": 1}})
    assert replicas_for(settings) == 1
    assert replicas_for(settings, Role.PRIMARY) == 5
    assert application_namespace(settings) == settings.kubernetes.namespace
    assert not settings.application.pilot_light
    assert load_settings("dr").application.pilot_light  # the shipped default


@pytest.mark.parametrize(
    ("application", "message"),
    [
        (
            {"standbyReplicas": 4, "primaryReplicas": 3},
            "standbyReplicas 4 is above primaryReplicas 3; expected 0 (pilot light) up to primaryReplicas",
        ),
        ({"primaryReplicas": 0}, "drtopo:application.primaryReplicas = 0: Input should be greater than or equal to 1"),
        ({"standbyReplicas": -1}, "drtopo:application.standbyReplicas = -1: Input should be greater than or equal"),
        ({"startSeconds": 0}, "drtopo:application.startSeconds = 0: Input should be greater than 0"),
        ({"deployment": "Collector_1"}, "drtopo:application.deployment = 'Collector_1': String should match"),
        ({"replicas": 2}, "drtopo:application.replicas = 2: Extra inputs are not permitted"),
    ],
)
def test_bad_application_settings_fail_in_one_line(application: dict[str, Any], message: str) -> None:
    config = copy.deepcopy(stack_config("dr"))
    config["drtopo:application"] = application
    with pytest.raises(SettingsError) as err:
        settings_from_config("dr", config, source="Pulumi.dr.yaml")
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("Pulumi.dr.yaml: ")
