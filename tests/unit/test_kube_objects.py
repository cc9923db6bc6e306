"""The program's Kubernetes objects as the lab applies them (lab/kube_objects.py): rendered under mocks, changed only
in what the lab must change (integers the mocks carry as floats, images never pulled)."""

from __future__ import annotations

from drtopo.settings import load_settings
from lab import kube_objects


def test_prod_objects_are_every_kubernetes_resource_the_program_declares() -> None:
    objects = kube_objects.program_objects(load_settings("prod"))
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        ["ServiceAccount"] * 3 + ["ConfigMap"] * 2 + ["Deployment", "Role", "RoleBinding"] + ["CronJob"] * 3
    )
    assert {o["metadata"]["namespace"] for o in objects} == {load_settings("prod").kubernetes.namespace}
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert isinstance(deployment["spec"]["replicas"], int)
    for o in objects:
        if o["kind"] in kube_objects.POD_SPEC_PATHS:
            spec = o
            for key in kube_objects.POD_SPEC_PATHS[o["kind"]]:
                spec = spec[key]
            containers = spec.get("initContainers", []) + spec["containers"]
            assert containers and all(c["imagePullPolicy"] == "Never" for c in containers)


def test_integral_restores_whole_numbers_only() -> None:
    assert kube_objects.integral({"a": [1.0, 2.5, "3"], "b": {"c": 0.0}, "d": True}) == {
        "a": [1, 2.5, "3"],
        "b": {"c": 0},
        "d": True,
    }


def test_namespaces_of_the_namespaced_objects() -> None:
    objects = [
        {"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n2"}},
        {"kind": "Role", "metadata": {"name": "b", "namespace": "n1"}},
        {"kind": "ClusterRole", "metadata": {"name": "c"}},
    ]
    assert [n["metadata"]["name"] for n in kube_objects.namespaces_of(objects)] == ["n1", "n2"]
