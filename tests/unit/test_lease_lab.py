"""The lease on the lab, what needs no lab: the stack files the lab writes with it on, the guard's objects as the
lab's pods see them (its ConfigMap, its endpoints through the gates, credentials from a Secret), and the wait for a
guard's renewals over moto's S3 in-process with the test's clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import guard
from drtopo.fencing.deployment import GuardError, wait_renewing
from drtopo.fencing.guard import Guard
from drtopo.fencing.quorum import Quorum
from drtopo.fencing.store import S3LeaseStore
from drtopo.settings import FencingMode, load_settings
from lab import kube_objects, kube_workloads
from lab.project import LAB_LEASE, LAB_STACKS, WITNESS_REGION, StackEndpoints, write_project

ENDPOINTS = {"prod": StackEndpoints(15432, 19092, 18080), "dr": StackEndpoints(25432, 29092, 28080)}


@pytest.mark.parametrize("on", [True, False])
def test_the_lab_writes_both_stacks_with_its_short_lease_or_none(tmp_path: Path, on: bool) -> None:
    write_project(tmp_path, ENDPOINTS, fencing=LAB_LEASE if on else None)
    for stack in LAB_STACKS:
        fencing = load_settings(stack, tmp_path).fencing
        if not on:
            assert fencing.mode is FencingMode.OFF
            continue
        assert fencing.mode is FencingMode.LEASE
        assert (fencing.lease_seconds, fencing.renew_seconds, fencing.witness_region) == (6, 2, WITNESS_REGION)
        assert fencing.witness_stack == "prod" and fencing.worst_seconds == 8


def test_the_guards_pods_get_the_labs_files_and_each_regions_endpoint_through_the_gates() -> None:
    endpoints = {"us-east-1": "http://10.1.0.2:4566", "us-west-2": "http://10.1.0.2:7001", WITNESS_REGION: "x"}
    env = kube_workloads.guard_env(endpoints, "http://10.1.0.2:4566", ("10.1.0.2", 6443))
    view = kube_objects.PodView(guard_files={"outputs.json": "{}"}, guard_env=env)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": guard.CONFIG_MAP}, "data": {"a": "b"}}
    assert kube_objects.lab_object(config, view)["data"] == {"outputs.json": "{}"}
    container = {
        "name": "guard",
        "image": "i",
        "env": [{"name": "PGSSLMODE", "value": "verify-full"}, {"name": "HOME", "value": "/tmp"}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": guard.GUARD},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }
    got = kube_objects.lab_object(deployment, view)["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {e["name"]: e for e in got}
    assert by_name["PGSSLMODE"]["value"] == "disable" and by_name["HOME"]["value"] == "/tmp"
    assert by_name["DRTOPO_AWS_ENDPOINTS"]["value"] == ",".join(f"{r}={u}" for r, u in sorted(endpoints.items()))
    assert by_name["AWS_ENDPOINT_URL"]["value"] == "http://10.1.0.2:4566"
    # Its own cluster's API where in-cluster kubectl looks for it (the lab runs no kube-proxy): the application's
    # scale while fenced, with the pod's service account.
    assert (by_name["KUBERNETES_SERVICE_HOST"]["value"], by_name["KUBERNETES_SERVICE_PORT"]["value"]) == (
        "10.1.0.2",
        "6443",
    )
    assert not {"KUBECONFIG"} & set(by_name)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in by_name[key] and by_name[key]["valueFrom"]["secretKeyRef"]["key"] == key
    other = {**deployment, "metadata": {"name": "something-else"}}
    assert kube_objects.lab_object(other, view)["spec"]["template"]["spec"]["containers"][0]["env"] == container["env"]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class NoFence:
    def apply(self) -> dict[str, str]:
        raise AssertionError("the guard fenced while renewing")

    def holds(self) -> bool:
        return False


def test_promote_sees_the_new_primarys_guard_renew_or_says_it_does_not(stores: list[S3LeaseStore]) -> None:
    clock = Clock()
    holder = Guard(Quorum(stores, clock), "dr", "us-west-2", 6.0, 2.0, NoFence(), now=clock)
    holder.start()

    def step(seconds: float) -> None:  # the guard renews while promote waits
        clock.t += seconds
        holder.step()

    seen = wait_renewing(stores, "dr", 60.0, 2.0, step, clock)
    assert seen.holder == "dr" and seen.epoch == 1 and seen.renewals >= 1

    def idle(seconds: float) -> None:  # a guard that does not run
        clock.t += seconds

    with pytest.raises(GuardError, match="the guard of dr renewed nothing within 5 s"):
        wait_renewing(stores, "dr", 5.0, 2.0, idle, clock)
    with pytest.raises(GuardError, match="epoch 1 held by dr"):
        wait_renewing(stores, "prod", 5.0, 2.0, idle, clock)
