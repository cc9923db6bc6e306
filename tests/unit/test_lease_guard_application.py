"""The guard keeps its region's application at none while fenced: on moto's S3 model in-process with the test's clock
(as test_lease_quorum.py) and a stand-in Deployment, the guard scales the application to 0 when it fences, again
whenever it is scaled up while fenced, never while its lease holds; a scale that fails is said and tried again the
next step and leaves the database's fence as it is. Also the kubectl calls the guard's Deployment handle makes."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from drtopo.application import deployment
from drtopo.application.deployment import RegionApp, Unreachable
from drtopo.fencing.guard import APPLICATION_TIMEOUT_SECONDS, ApplicationWriters, Guard
from drtopo.fencing.quorum import Quorum
from drtopo.fencing.store import S3LeaseStore
from drtopo.fencing.takeover import take_over
from drtopo.settings import Fencing
from tests.unit.test_lease_quorum import LEASE, RENEW, Clock, FenceLog, cut

WHERE = "prod-cluster/ns/deployment/app"


class App:
    """The region's application Deployment as the guard sees it; `failing` makes a read or a scale raise."""

    where = WHERE

    def __init__(self, replicas: int = 3) -> None:
        self.count = replicas
        self.reads = 0
        self.scales = 0
        self.failing: dict[str, Exception] = {}

    def replicas(self) -> int:
        self.reads += 1
        if "read" in self.failing:
            raise self.failing["read"]
        return self.count

    def stop(self) -> None:
        if "scale" in self.failing:
            raise self.failing["scale"]
        self.scales += 1
        self.count = 0


class Said:
    """The guard's reporter: every line, by level."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def progress(self, text: str) -> None:
        self.lines.append(("progress", text))

    def info(self, text: str) -> None:
        self.lines.append(("info", text))

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))

    def saying(self, words: str) -> list[str]:
        return [text for _, text in self.lines if words in text]


def guard(stores: list[S3LeaseStore], clock: Clock, app: App) -> tuple[Guard, FenceLog, Said]:
    fence, said = FenceLog(), Said()
    running = Guard(Quorum(stores, clock), "prod", "us-east-1", LEASE, RENEW, fence, said, clock, writers=app)
    return running, fence, said


def lapse(g: Guard, clock: Clock, stores: list[S3LeaseStore], app: App) -> None:
    """Two stores cut: the guard renews nothing, holds its lease to its end without touching the application, then
    fences."""
    g.start()
    cut(stores[1])
    cut(stores[2])
    while not g.state.why:
        assert (app.reads, app.scales) == (0, 0), g.state.to_dict()
        clock.sleep(RENEW)
        g.step()


def test_a_fenced_guard_scales_its_application_to_none_once(stores: list[S3LeaseStore]) -> None:
    clock, app = Clock(), App(replicas=3)
    g, fence, said = guard(stores, clock, app)
    lapse(g, clock, stores, app)
    assert fence.applied == 1 and (app.count, app.scales) == (0, 1)
    assert said.saying(f"scaled {WHERE} from 3 to 0 replicas")
    for _ in range(4):  # kept fenced: looked at every step, never scaled again while it stays at none
        clock.sleep(RENEW)
        g.step()
    assert (app.scales, app.reads, fence.applied) == (1, 5, 1)
    assert g.state.to_dict()["application"] == {"replicas": 0, "scaled_down": 1, "error": ""}
    assert g.state.application_line(WHERE) == f"{WHERE}: 0 replicas, scaled down 1 time(s) while fenced"


def test_an_application_scaled_up_while_fenced_is_scaled_down_again(stores: list[S3LeaseStore]) -> None:
    clock, app = Clock(), App(replicas=2)
    g, _, said = guard(stores, clock, app)
    lapse(g, clock, stores, app)
    app.count = 5  # someone (a deploy, an HPA, an operator) scales it up while the lease is lapsed
    clock.sleep(RENEW)
    g.step()
    assert (app.count, app.scales, g.state.app_scaled) == (0, 2, 2)
    assert said.saying(f"scaled {WHERE} from 5 to 0 replicas (scaled up again while fenced)")


def test_an_application_already_at_none_is_reported_not_scaled(stores: list[S3LeaseStore]) -> None:
    clock, app = Clock(), App(replicas=0)
    g, _, said = guard(stores, clock, app)
    lapse(g, clock, stores, app)
    assert (app.scales, g.state.app_replicas) == (0, 0)
    assert said.saying(f"{WHERE}: 0 replicas, scaled down 0 time(s) while fenced")


def test_a_guard_whose_lease_holds_never_touches_the_application(stores: list[S3LeaseStore]) -> None:
    clock, app = Clock(), App(replicas=3)
    g, fence, _ = guard(stores, clock, app)
    g.start()
    cut(stores[2])  # one region of three down: the majority holds
    for _ in range(16):  # 80 s, beyond two leases
        clock.sleep(RENEW)
        g.step()
    assert not g.state.why and fence.applied == 0
    assert (app.reads, app.scales, app.count) == (0, 0, 3)
    assert g.state.to_dict()["application"] == {"replicas": None, "scaled_down": 0, "error": ""}


def test_a_newer_epoch_scales_the_application_down_at_the_same_step(stores: list[S3LeaseStore]) -> None:
    clock, app = Clock(), App(replicas=3)
    g, fence, _ = guard(stores, clock, app)
    g.start()
    take_over(stores, "dr", "us-west-2", Fencing(lease_seconds=LEASE, renew_seconds=RENEW), wait=False)
    g.step()
    assert "newer epoch" in g.state.why and fence.applied == 1 and (app.count, app.scales) == (0, 1)


@pytest.mark.parametrize(
    ("fails", "error"),
    [
        ("read", Unreachable("prod's Kubernetes API (context prod-cluster) gave no answer, or no kubectl")),
        ("scale", Unreachable('kubectl apply on x: deployments.apps "app" is forbidden')),
        ("scale", OSError("kubectl: exec format error")),
    ],
)
def test_a_failing_scale_keeps_the_guard_running_and_the_fence_and_is_retried(
    stores: list[S3LeaseStore], fails: str, error: Exception
) -> None:
    clock, app = Clock(), App(replicas=3)
    app.failing[fails] = error
    g, fence, said = guard(stores, clock, app)
    lapse(g, clock, stores, app)
    for _ in range(3):
        clock.sleep(RENEW)
        g.step()  # raises nothing
    assert g.state.fenced and fence.applied == 1 and fence.holds()  # the database's fence stands, applied once
    assert app.count == 3 and g.state.app_error == str(error)
    assert g.state.app_replicas == (None if fails == "read" else 3)
    assert len(said.saying("not scaled to 0 yet")) == 4  # said at every step, the fencing one and three more
    app.failing.clear()
    clock.sleep(RENEW)
    g.step()
    assert (app.count, app.scales, g.state.app_error, g.state.app_replicas) == (0, 1, "", 0)
    assert fence.applied == 1


def test_a_database_that_cannot_be_fenced_yet_does_not_hold_the_application_up(stores: list[S3LeaseStore]) -> None:
    """The database down (its fence retried next step) and the application still running: it is scaled to none."""
    clock, app = Clock(), App(replicas=3)
    g, fence, _ = guard(stores, clock, app)

    def refused() -> dict[str, Any]:
        raise OSError("connection refused")

    fence.apply = refused  # type: ignore[method-assign]
    lapse(g, clock, stores, app)
    assert not g.state.fenced and (app.count, app.scales) == (0, 1)


def test_the_deployment_handle_reads_and_applies_zero_within_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """ApplicationWriters over drtopo.application.deployment: a get, then server-side apply of spec.replicas 0
    under drtopo's field manager, each kubectl call bounded by the guard's own timeout."""
    calls: list[tuple[tuple[str, ...], str | None, float]] = []
    live = {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 4}}

    def kubectl(
        context: str | None, *args: str, stdin: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        calls.append((args, stdin, timeout))
        return subprocess.CompletedProcess(["kubectl", *args], 0, json.dumps(live), "")

    monkeypatch.setattr(deployment, "kubectl", kubectl)
    app = RegionApp("prod", "prod-cluster", "ns", "app", "http://x/actuator/health")
    writers = ApplicationWriters(app)
    assert writers.where == "prod-cluster/ns/deployment/app"
    assert writers.replicas() == 4
    writers.stop()
    (get, _, bound), *_, (apply, body, _) = calls
    assert get == ("get", "deployment", "app", "-n", "ns", "-o", "json")
    assert apply == deployment.PARTIAL_APPLY and "--field-manager=drtopo" in apply
    assert body is not None and json.loads(body)["spec"] == {"replicas": 0}
    assert {timeout for _, _, timeout in calls} == {APPLICATION_TIMEOUT_SECONDS} and bound < LEASE
