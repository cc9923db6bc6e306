"""`restore namespace` and the namespace-loss drill, their pure parts: which manifests of a backup are the
namespace's and in what order, when a lost namespace is gone, when a workload has rolled out, and how the drill
compares what came back (a Secret by its keys, never a value)."""

from __future__ import annotations

from typing import Any

import pytest

from drtopo.backup import namespace
from drtopo.backup.namespace import ABSENT, ACTIVE, TERMINATING, Workload
from scripts.drill.scenarios import BY_NAME, ORDER
from scripts.drill.scenarios.namespace_loss import comparable, differences
from scripts.restore import build_parser


def test_the_namespaces_manifests_come_in_dependency_order_and_nothing_else() -> None:
    ns = "biopro-prod"
    files = [
        f"kubernetes/{ns}/poddisruptionbudgets.policy.yaml",
        f"kubernetes/{ns}/deployments.apps.yaml",
        f"kubernetes/{ns}/secret-inventory.json",
        f"kubernetes/{ns}/services.yaml",
        f"kubernetes/{ns}/persistentvolumeclaims.yaml",
        f"kubernetes/{ns}/horizontalpodautoscalers.autoscaling.yaml",
        f"kubernetes/{ns}/ingresses.networking.k8s.io.yaml",
        f"kubernetes/{ns}/configmaps.yaml",
        f"kubernetes/{ns}/rolebindings.rbac.authorization.k8s.io.yaml",
        f"kubernetes/{ns}/roles.rbac.authorization.k8s.io.yaml",
        f"kubernetes/{ns}/serviceaccounts.yaml",
        f"kubernetes/{ns}/namespace.yaml",
        "kubernetes/other/namespace.yaml",
        "Pulumi.prod.yaml",
    ]
    ordered = [name.split("/")[-1].removesuffix(".yaml") for name in namespace.namespace_files(files, ns)]
    assert ordered == [
        "namespace",
        "serviceaccounts",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "configmaps",
        "persistentvolumeclaims",
        "deployments.apps",
        "services",
        "ingresses.networking.k8s.io",
        "horizontalpodautoscalers.autoscaling",
        "poddisruptionbudgets.policy",
    ]


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        (None, ABSENT),
        ({"metadata": {"name": "ns"}, "status": {"phase": "Active"}}, ACTIVE),
        ({"metadata": {"name": "ns", "deletionTimestamp": "2026-12-02T18:00:00Z"}}, TERMINATING),
        ({"metadata": {"name": "ns"}, "status": {"phase": "Terminating"}}, TERMINATING),
    ],
)
def test_a_namespace_is_absent_terminating_or_active(answer: dict[str, Any] | None, state: str) -> None:
    assert namespace.state_of(answer) == state


def _deployment(replicas: int, generation: int, observed: int, updated: int, available: int) -> dict[str, Any]:
    status = {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available}
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas}, "status": status}


@pytest.mark.parametrize(
    ("answer", "done"),
    [
        (_deployment(1, 1, 1, 1, 1), True),
        (_deployment(0, 1, 1, 0, 0), True),  # a pilot light at 0 replicas is rolled out
        (_deployment(1, 1, 1, 1, 0), False),  # updated, not yet available
        (_deployment(1, 2, 1, 1, 1), False),  # the controller has not seen the newest spec
        ({"metadata": {"generation": 1}, "spec": {}, "status": {}}, False),  # default 1 replica, nothing yet
    ],
)
def test_a_deployment_has_rolled_out_when_its_newest_spec_is_updated_and_available(
    answer: dict[str, Any], done: bool
) -> None:
    assert namespace.rolled_out("deployment", answer)[0] is done


def test_statefulsets_count_ready_replicas_and_daemonsets_their_scheduled_pods() -> None:
    sts = {"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": {"observedGeneration": 1}}
    assert not namespace.rolled_out("statefulset", {**sts, "status": {**sts["status"], "updatedReplicas": 2}})[0]
    ready = {**sts["status"], "updatedReplicas": 2, "readyReplicas": 2}
    assert namespace.rolled_out("statefulset", {**sts, "status": ready}) == (True, "2/2 ready, 2 updated")
    ds = {"observedGeneration": 3, "desiredNumberScheduled": 1, "updatedNumberScheduled": 1, "numberAvailable": 1}
    assert namespace.rolled_out("daemonset", {"metadata": {"generation": 3}, "status": ds})[0]


def test_the_workloads_waited_for_are_the_deployments_statefulsets_and_daemonsets() -> None:
    items = {"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]}
    assert namespace.workloads_in("kubernetes/ns/deployments.apps.yaml", items) == [
        Workload("deployment", "a"),
        Workload("deployment", "b"),
    ]
    assert namespace.workloads_in("kubernetes/ns/statefulsets.apps.yaml", items)[0] == Workload("statefulset", "a")
    assert namespace.workloads_in("kubernetes/ns/cronjobs.batch.yaml", items) == []
    assert namespace.workloads_in("kubernetes/ns/deployments.apps.yaml", None) == []


def test_restore_namespace_takes_a_deadline_and_refuses_a_bad_one() -> None:
    args = build_parser().parse_args(["namespace", "--stack", "prod", "--wait-seconds", "90", "--dry-run"])
    assert (args.command, args.wait_seconds, args.dry_run, args.force) == ("namespace", 90.0, True, False)
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["namespace", "--stack", "prod", "--wait-seconds", "soon"])
    assert exc.value.code == 2


def _secret(keys: list[str], value: str) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": "db"}, "type": "Opaque", "data": dict.fromkeys(keys, value)}


def test_the_drill_compares_secrets_by_their_keys_never_their_values_and_names_what_differs() -> None:
    before = comparable(
        [
            _secret(["password"], "b2xk"),
            {"kind": "ServiceAccount", "metadata": {"name": "default"}},  # the cluster makes it again
            {"kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"a": "1"}},
            {"kind": "Service", "metadata": {"name": "web"}, "spec": {"clusterIP": "10.0.0.9", "ports": [1]}},
            {"kind": "Pod", "metadata": {"name": "web-1"}},  # a controller's: not compared
        ]
    )
    assert sorted(before) == ["ConfigMap/app", "Secret/db", "Service/web"]
    assert "b2xk" not in repr(before)
    after = comparable(
        [
            _secret(["password"], "bmV3"),  # a new value from the secret store is the same Secret
            {"kind": "Service", "metadata": {"name": "web"}, "spec": {"clusterIP": "10.0.0.7", "ports": [1]}},
            {"kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"a": "2"}},
        ]
    )
    assert differences(before, after) == {"ConfigMap/app": "differs in data"}
    labelled = {"name": "db", "labels": {"by": "restore"}}
    relabelled = comparable([{**_secret(["password"], "bmV3"), "metadata": labelled}])
    assert differences({"Secret/db": before["Secret/db"]}, relabelled) == {}
    assert differences(before, {k: v for k, v in after.items() if k != "Secret/db"})["Secret/db"] == "missing"


def test_namespace_loss_is_a_variant_of_the_configuration_loss_row_run_only_when_named() -> None:
    scenario = BY_NAME["namespace-loss"]
    assert scenario.objectives_key == "configuration_loss" and not scenario.writes_rows
    assert "namespace-loss" not in ORDER
