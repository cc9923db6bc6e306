"""`up`, `status` and `down` through the CLI on their own lab root: nothing is left running, also after a failed up."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drtopo.mm2_properties import render_mm2_properties
from drtopo.outputs import load_outputs
from drtopo.settings import load_settings
from lab import core, kafka, kube, kube_workloads, process
from lab.core import Lab
from tests.integration.conftest import make_root

pytestmark = pytest.mark.lab


@pytest.fixture
def root() -> Iterator[Path]:
    base = make_root("drtopo-lifecycle-")
    yield base / "lab"
    Lab(base / "lab").down()  # a failing test must not leak servers either
    shutil.rmtree(base, ignore_errors=True)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, timeout=300)


def recorded_pids(root: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text().split()[0]) for p in (root / "pids").glob("*.pid")}


def node_namespace(root: Path) -> Path:
    """The node's network namespace of the lab at `root` (its name depends on the root alone)."""
    return kube.NETNS_DIR / kube.node_network(root.absolute(), 0).namespace


def listening_ports(root: Path) -> list[int]:
    state = json.loads((root / "lab.json").read_text())
    ports = state["ports"]
    flat = [ports["aws"], *ports["postgres"].values(), *ports["kafka"].values()]
    # The service stand-ins are pods on the Kubernetes node, at its address inside the lab's namespace. Once the
    # namespace is gone nothing listens there, and the address is no longer the lab's: a connection to it would leave
    # the machine (the network rule), and a gateway that accepts any port below 32768 would answer it.
    on_node = []
    if node_namespace(root).exists():
        on_node = [p for p in ports["service"].values() if process.port_open(p, state["node_ip"])]
    return [p for p in flat if process.port_open(p)] + on_node


def assert_nothing_left(pids: dict[str, int], root: Path) -> None:
    assert pids, "expected recorded processes to check"
    assert [name for name, pid in pids.items() if process.alive(pid)] == []
    assert not node_namespace(root).exists()
    assert listening_ports(root) == []


def test_up_status_down_by_cli(root: Path) -> None:
    assert cli("status", "--root", str(root)).returncode == 1
    up = cli("up", "--root", str(root))
    assert up.returncode == 0, up.stderr
    print(up.stdout)
    assert cli("status", "--root", str(root)).returncode == 0
    pids = recorded_pids(root)
    # The AWS emulator, both databases and both Kafka brokers listen, and the primary's (prod's) service; the
    # standby's application runs 0 replicas (pilot light, the stacks' default), so nothing answers at its port.
    state = json.loads((root / "lab.json").read_text())
    ports = state["ports"]
    servers = [ports["aws"], *ports["postgres"].values(), *ports["kafka"].values()]
    assert sorted(listening_ports(root)) == sorted([*servers, ports["service"]["prod"]])
    again = cli("up", "--root", str(root))
    assert again.returncode == 0 and "already up" in again.stdout
    assert recorded_pids(root) == pids
    down = cli("down", "--root", str(root))
    assert down.returncode == 0, down.stderr
    assert_nothing_left(pids, root)
    status = cli("status", "--root", str(root))
    assert status.returncode == 1 and "NOT running" in status.stdout


def test_failed_up_stops_what_it_started(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: dict[str, int] = {}
    real_spawn = process.spawn

    def recording_spawn(root_: Path, name: str, argv: list[str], **kwargs: object) -> int:
        spawned[name] = real_spawn(root_, name, argv, **kwargs)  # type: ignore[arg-type]
        return spawned[name]

    def broken_kafka(*args: object, **kwargs: object) -> object:
        raise kafka.KafkaLabError("injected: Kafka cluster did not start")

    # Kafka fails at once (its processes are covered by the full up/down test) while PostgreSQL, the emulator and
    # Kubernetes start: up must fail, and stop all of them.
    monkeypatch.setattr(process, "spawn", recording_spawn)
    monkeypatch.setattr(kafka, "start_cluster", broken_kafka)
    lab = Lab(root)
    with pytest.raises(kafka.KafkaLabError, match="injected"):
        lab.up()
    assert {"aws", "postgres-prod", "postgres-dr", "kube-apiserver", "kube-kubelet"} <= set(spawned)
    assert_nothing_left(spawned, root)
    assert not lab.is_up()
    assert core.Lab(root).status()["up"] is False


def test_project_copy_validates_with_the_labs_endpoints(lab: Lab) -> None:
    for stack in ("prod", "dr"):
        settings = load_settings(stack, lab.project_dir)
        outputs = load_outputs(lab.region(stack).outputs_path, stack)
        # The project copy and the outputs both name the gates: the stacks as seen from outside their regions.
        assert settings.kafka.bootstrap_servers == lab.region(stack).kafka.gated_bootstrap == outputs.kafka_bootstrap
        assert settings.kafka.mirror.replication_factor == 1
        assert {t.replication_factor for t in settings.kafka.topics} == {1}
        assert settings.database.port == outputs.db_port
        assert settings.dns.health_check_port == int(outputs.service_url.rsplit(":", 1)[1])
    # MirrorMaker's ConfigMap: the program's text, with the addresses where its pod reaches the two clusters (its
    # own directly, the source through the source region's gate).
    config = kube_workloads.get(lab.root, "configmap", "mirror-maker-2", lab.dr.namespace)
    assert config is not None
    assert config["data"]["mm2.properties"] == render_mm2_properties(
        load_settings("dr", lab.project_dir),
        bootstrap_servers=lab.dr.kafka.pod_bootstrap,
        peer_bootstrap_servers=lab.prod.kafka.pod_gated_bootstrap,
    )
    assert lab.env()["DRTOPO_PROJECT_DIR"] == str(lab.project_dir)
