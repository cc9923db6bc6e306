"""The lab's Kafka: single-broker Apache Kafka clusters in KRaft mode and a dedicated MirrorMaker 2, as real JVMs.

Everything lives under `<root>/kafka/`; processes are started and stopped through lab/process.py, by PID.

    start_cluster(root, name, port=None, controller_port=None) -> Cluster   # idempotent; a restart keeps its ports
    start_clusters(root, names) -> {name: Cluster}                         # the same, JVMs starting in parallel
    stop_cluster(root, name)                                               # SIGTERM (clean), SIGKILL after timeout
    kill_cluster(root, name)                                               # SIGKILL: a crashed cluster
    cluster(root, name) -> Cluster | None; cluster_running(root, name) -> bool
    create_topics(bootstrap, topics, replication_factor=None) -> list[str] # settings.kafka.topics; returns created
    mirrormaker_properties(settings, source_bootstrap, target_bootstrap) -> str
        # render_mm2_properties(settings) with only the two bootstrap addresses changed
    start_mirrormaker(root, properties_text) -> int                        # returns once its source tasks run
    stop_mirrormaker(root); mirrormaker_running(root) -> bool
    mirrormaker_status(target_bootstrap, source_alias) -> {"connector-X"|"task-X-n": state}
    wait_mirroring(source_bootstrap, target_bootstrap, topic, timeout)     # target end offsets reach the source's

Process names (lab/process.py PID files): `kafka-<name>` per cluster, `mirrormaker` for MirrorMaker 2.
The JVMs are kept small (serial GC, C1 only, a few hundred MB) because the lab runs on 2 cores.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from drtopo.kafka.admin import admin_client, end_offsets
from drtopo.kafka.offsets import read_topic
from drtopo.mm2_properties import render_mm2_properties
from drtopo.settings import Settings, Topic
from lab import jars, process

LOOPBACK = process.LOOPBACK
MIRRORMAKER = "mirrormaker"
BROKER_HEAP = "-Xmx384m"
MIRRORMAKER_HEAP = "-Xmx448m"
JVM_FLAGS = ("-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k", "-Djava.awt.headless=true")
LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients.consumer.ConsumerConfig=WARN
log4j.logger.org.apache.kafka.clients.producer.ProducerConfig=WARN
log4j.logger.org.apache.kafka.clients.admin.AdminClientConfig=WARN
log4j.logger.org.apache.kafka.connect.runtime.WorkerConfig=WARN
log4j.logger.org.reflections=ERROR
"""


class KafkaLabError(RuntimeError):
    """A lab Kafka process could not be started or configured; the message names which and why."""


@dataclass(frozen=True)
class Cluster:
    """One single-broker KRaft cluster of the lab."""

    name: str
    port: int
    controller_port: int
    cluster_id: str
    data_dir: str
    # The listener for the lab's pods: bound on loopback, advertised as the node's address, which lab/bridge.py
    # forwards to it (0: none).
    pod_port: int = 0
    pod_host: str = ""
    # The listeners behind the region's gates (lab/gates.py): GATE for outside host clients, bound on loopback and
    # advertised as 127.0.0.1:<its gate's port>; PODGATE for outside pods (the peer's MirrorMaker), advertised as
    # <pod_host>:<its gate's port> (0: none).
    gate_port: int = 0
    gate_advertised: int = 0
    pod_gate_port: int = 0
    pod_gate_advertised: int = 0

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pod_bootstrap(self) -> str:
        return f"{self.pod_host}:{self.pod_port}"

    @property
    def process_name(self) -> str:
        return process_name(self.name)


def process_name(name: str) -> str:
    return f"kafka-{name}"


def broker_properties(
    port: int,
    controller_port: int,
    data_dir: str,
    pod_port: int = 0,
    pod_host: str = "",
    gates: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> str:
    """server.properties of a combined broker+controller node listening only on loopback (pure).

    With `pod_port`, a second listener PODS on loopback advertises `pod_host:pod_port`: the node's address, where
    the lab's bridge takes the pods' connections to it. Host clients keep PLAINTEXT on 127.0.0.1.
    `gates` = (GATE port, its gate's port, PODGATE port, its gate's port): the listeners behind the region's gates,
    each advertised as its gate, so a client that came through the gate keeps going through it.
    """
    listeners = [f"PLAINTEXT://{LOOPBACK}:{port}", f"CONTROLLER://{LOOPBACK}:{controller_port}"]
    advertised = [f"PLAINTEXT://{LOOPBACK}:{port}"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if pod_port:
        listeners.append(f"PODS://{LOOPBACK}:{pod_port}")
        advertised.append(f"PODS://{pod_host}:{pod_port}")
        protocols.append("PODS:PLAINTEXT")
    gate_port, gate_advertised, pod_gate_port, pod_gate_advertised = gates
    if gate_port:
        listeners.append(f"GATE://{LOOPBACK}:{gate_port}")
        advertised.append(f"GATE://{LOOPBACK}:{gate_advertised}")
        protocols.append("GATE:PLAINTEXT")
    if pod_gate_port:
        listeners.append(f"PODGATE://{LOOPBACK}:{pod_gate_port}")
        advertised.append(f"PODGATE://{pod_host}:{pod_gate_advertised}")
        protocols.append("PODGATE:PLAINTEXT")
    settings = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": ",".join(listeners),
        "advertised.listeners": ",".join(advertised),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": data_dir,
        # Topics come from settings (and MirrorMaker creates its own): a typo must not create a topic.
        "auto.create.topics.enable": "false",
        # One broker: every internal topic has a single replica; few partitions keep the first group start quick.
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 5,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 5,
        "group.initial.rebalance.delay.ms": 0,
        "num.network.threads": 2,
        "num.io.threads": 2,
        "num.recovery.threads.per.data.dir": 1,
        "log.segment.bytes": 16 * 1024 * 1024,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _cluster_dir(root: Path, name: str) -> Path:
    return root / "kafka" / name


def _state_file(root: Path, name: str) -> Path:
    return _cluster_dir(root, name) / "cluster.json"


def cluster(root: Path, name: str) -> Cluster | None:
    """The cluster recorded under `root` (running or not), or None when it was never started."""
    try:
        return Cluster(**json.loads(_state_file(root, name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def cluster_running(root: Path, name: str) -> bool:
    return process.running(root, process_name(name))


def _new_cluster_id() -> str:
    # Kafka's base64 UUIDs; one starting with '-' would read as a command-line flag.
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def _java(heap: str, log4j: Path, main_class: str, *args: str) -> list[str]:
    return ["java", heap, *JVM_FLAGS, f"-Dlog4j.configuration=file:{log4j}", "-cp", jars.classpath(), main_class, *args]


def _log4j(root: Path) -> Path:
    path = root / "kafka" / "log4j.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != LOG4J:
        path.write_text(LOG4J)
    return path


def _format_storage(root: Path, state: Cluster, props: Path) -> None:
    if (Path(state.data_dir) / "meta.properties").is_file():
        return
    log = root / "logs" / f"{state.process_name}-format.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = _java(
        "-Xmx128m", _log4j(root), "kafka.tools.StorageTool", "format", "-t", state.cluster_id, "-c", str(props)
    )
    with open(log, "ab") as out:
        result = subprocess.run(argv, stdout=out, stderr=out, check=False)
    if result.returncode != 0:
        raise KafkaLabError(f"formatting Kafka storage for cluster {state.name!r} failed; see {log}")


def start_cluster(
    root: Path,
    name: str,
    port: int | None = None,
    controller_port: int | None = None,
    timeout: float = 90.0,
    pods: tuple[str, int] | None = None,
    gates: tuple[int, int, int, int] | None = None,
) -> Cluster:
    """Start (or find running) the cluster `name`; returns once a client can list its metadata.

    A cluster started before keeps its data, id and ports (and its pod listener, `pods` = (node address, port),
    and its gates' listeners, `gates` as `broker_properties` takes them), so bootstrap addresses in outputs stay
    valid.
    """
    root = Path(root)
    previous = cluster(root, name)
    directory = _cluster_dir(root, name)
    state = Cluster(
        name=name,
        port=port or (previous.port if previous else process.free_port()),
        controller_port=controller_port or (previous.controller_port if previous else process.free_port()),
        cluster_id=previous.cluster_id if previous else _new_cluster_id(),
        data_dir=str(directory / "data"),
        pod_port=pods[1] if pods else (previous.pod_port if previous else 0),
        pod_host=pods[0] if pods else (previous.pod_host if previous else ""),
        **_gate_fields(gates, previous),
    )
    if cluster_running(root, name) and previous == state:
        wait_broker(state.bootstrap, timeout)
        return state
    bound = (state.port, state.controller_port, state.pod_port, state.gate_port, state.pod_gate_port)
    for busy in (p for p in bound if p and process.port_open(p)):
        raise KafkaLabError(f"port {busy} for Kafka cluster {name!r} is already in use; stop what listens there")
    directory.mkdir(parents=True, exist_ok=True)
    props = directory / "server.properties"
    props.write_text(
        broker_properties(
            state.port,
            state.controller_port,
            state.data_dir,
            state.pod_port,
            state.pod_host,
            (state.gate_port, state.gate_advertised, state.pod_gate_port, state.pod_gate_advertised),
        )
    )
    _state_file(root, name).write_text(json.dumps(asdict(state), indent=2) + "\n")
    _format_storage(root, state, props)
    pid = process.spawn(root, state.process_name, _java(BROKER_HEAP, _log4j(root), "kafka.Kafka", str(props)))
    try:
        process.wait_port(state.port, timeout, f"Kafka cluster {name!r}", pid=pid)
        wait_broker(state.bootstrap, timeout)
    except (RuntimeError, TimeoutError) as exc:
        process.stop(root, state.process_name)
        raise KafkaLabError(f"{exc}; see {root / 'logs' / (state.process_name + '.log')}") from None
    return state


def _gate_fields(gates: tuple[int, int, int, int] | None, previous: Cluster | None) -> dict[str, int]:
    keys = ("gate_port", "gate_advertised", "pod_gate_port", "pod_gate_advertised")
    if gates is not None:
        return dict(zip(keys, gates, strict=True))
    return {key: getattr(previous, key) if previous else 0 for key in keys}


def start_clusters(root: Path, names: Iterable[str], timeout: float = 90.0) -> dict[str, Cluster]:
    """Start several clusters at once (their JVMs start in parallel); ports as `start_cluster` chooses them."""
    names = list(names)
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        futures = {name: pool.submit(start_cluster, root, name, None, None, timeout) for name in names}
        return {name: future.result() for name, future in futures.items()}


def wait_broker(bootstrap: str, timeout: float) -> None:
    """Wait until the broker at `bootstrap` serves every partition it holds (after a restart it reloads its logs)."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    reason = "no answer"
    while True:
        try:
            metadata = admin.list_topics(timeout=2)
            if metadata.brokers:
                end_offsets(bootstrap, list(metadata.topics))
                return
        except KafkaException as exc:
            reason = exc.args[0].str()
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka at {bootstrap} did not serve its partitions within {timeout:.0f} s ({reason})")
        time.sleep(0.2)


def stop_cluster(root: Path, name: str, timeout: float = 20.0) -> None:
    """Stop the cluster's broker cleanly (SIGTERM, then SIGKILL after `timeout`); its data and ports are kept."""
    process.stop(Path(root), process_name(name), timeout)


def kill_cluster(root: Path, name: str) -> None:
    """SIGKILL the broker (a crash, for drills); `start_cluster` recovers it from its logs."""
    process.kill(Path(root), process_name(name))
    process.stop(Path(root), process_name(name), 1)


def create_topics(bootstrap: str, topics: Iterable[Topic], replication_factor: int | None = None) -> list[str]:
    """Create the settings' topics (partitions, retention) that do not exist yet; returns the names created.

    `replication_factor` overrides each topic's own (the lab's single broker holds one replica).
    """
    admin = admin_client(bootstrap)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(
            t.name,
            num_partitions=t.partitions,
            replication_factor=replication_factor or t.replication_factor,
            config={"retention.ms": str(t.retention_ms)},
        )
        for t in topics
        if t.name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=30, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise KafkaLabError(f"creating topic {name!r} on {bootstrap} failed: {exc.args[0].str()}") from None
        created.append(name)
    return sorted(created)


def mirrormaker_properties(settings: Settings, source_bootstrap: str, target_bootstrap: str) -> str:
    """The stack's rendered MirrorMaker 2 properties with the lab's addresses (source = peer, target = this)."""
    return render_mm2_properties(settings, bootstrap_servers=target_bootstrap, peer_bootstrap_servers=source_bootstrap)


def mirrormaker_running(root: Path) -> bool:
    return process.running(Path(root), MIRRORMAKER)


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def enabled_flows(properties_text: str) -> list[tuple[str, str, str]]:
    """(source alias, target alias, target bootstrap) of every enabled flow in MirrorMaker 2 properties (pure)."""
    props = _properties(properties_text)
    flows = []
    for key, value in props.items():
        flow = key.removesuffix(".enabled")
        if flow != key and "->" in flow and "." not in flow and value.lower() == "true":
            source, target = flow.split("->")
            flows.append((source, target, props.get(f"{target}.bootstrap.servers", "")))
    return sorted(flows)


def status_topic(source_alias: str) -> str:
    """Dedicated MirrorMaker 2 keeps the Connect status of flow source->target in this topic on the target."""
    return f"mm2-status.{source_alias}.internal"


def mirrormaker_status(target_bootstrap: str, source_alias: str, since_ms: int = 0) -> dict[str, str]:
    """Newest state (RUNNING, FAILED, UNASSIGNED...) per connector and task of the flow, written at or after since_ms.

    Keys are `connector-<Connector>` and `task-<Connector>-<n>`, read from the flow's Connect status topic.
    """
    try:
        records = read_topic(target_bootstrap, status_topic(source_alias))
    except (LookupError, KafkaException):
        return {}  # not created yet, or its leader is still being elected: nothing is known to run
    states: dict[str, str] = {}
    for record in records:
        key = (record.key or b"").decode()
        if not key.startswith(("status-connector-", "status-task-")) or record.timestamp_ms < since_ms:
            continue
        if record.value is None:
            states.pop(key.removeprefix("status-"), None)
        else:
            states[key.removeprefix("status-")] = json.loads(record.value).get("state", "")
    return dict(sorted(states.items()))


def source_tasks_running(states: dict[str, str]) -> bool:
    """True when the MirrorSourceConnector and at least one of its tasks run, none failed (pure)."""
    tasks = {k: v for k, v in states.items() if k.startswith("task-MirrorSourceConnector-")}
    return (
        states.get("connector-MirrorSourceConnector") == "RUNNING"
        and any(v == "RUNNING" for v in tasks.values())
        and "FAILED" not in tasks.values()
    )


def start_mirrormaker(root: Path, properties_text: str, timeout: float = 120.0) -> int:
    """Run a dedicated MirrorMaker 2 on `properties_text` (written to <root>/kafka/mm2/mm2.properties); its PID.

    Returns once every enabled flow's MirrorSourceConnector task runs (from the flow's Connect status topic).
    Starting it again with the same text while it runs is a no-op; with another text it restarts.
    """
    root = Path(root)
    directory = root / "kafka" / "mm2"
    directory.mkdir(parents=True, exist_ok=True)
    props = directory / "mm2.properties"
    pid = process.read_pid(root, MIRRORMAKER)
    if pid is not None and process.alive(pid) and props.is_file() and props.read_text() == properties_text:
        return pid
    process.stop(root, MIRRORMAKER)
    props.write_text(properties_text)
    since_ms = int(time.time() * 1000) - 1000
    argv = _java(MIRRORMAKER_HEAP, _log4j(root), "org.apache.kafka.connect.mirror.MirrorMaker", str(props))
    pid = process.spawn(root, MIRRORMAKER, argv, cwd=directory)
    log = root / "logs" / f"{MIRRORMAKER}.log"
    try:
        wait_flows(properties_text, since_ms, timeout, lambda: process.alive(pid))
    except KafkaLabError as exc:
        process.stop(root, MIRRORMAKER)
        raise KafkaLabError(f"{exc}; see {log}") from None
    return pid


def wait_flows(properties_text: str, since_ms: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> float:
    """Wait until every enabled flow of `properties_text` has its MirrorSourceConnector task running, as its Connect
    status topic says in records written at or after `since_ms`; returns seconds waited. `alive` false: it exited."""
    start = time.monotonic()
    pending = enabled_flows(properties_text)
    while pending:
        if not alive():
            raise KafkaLabError("MirrorMaker 2 exited at start")
        if time.monotonic() - start > timeout:
            flows = ", ".join(f"{s}->{t}" for s, t, _ in pending)
            raise KafkaLabError(f"MirrorMaker 2 flows {flows} did not start within {timeout:.0f} s")
        pending = [(s, t, b) for s, t, b in pending if not source_tasks_running(mirrormaker_status(b, s, since_ms))]
        time.sleep(0.5)
    return time.monotonic() - start


def stop_mirrormaker(root: Path, timeout: float = 20.0) -> None:
    process.stop(Path(root), MIRRORMAKER, timeout)


def wait_mirroring(source_bootstrap: str, target_bootstrap: str, topic: str, timeout: float = 90.0) -> float:
    """Wait until MirrorMaker 2 copies `topic`'s newest source records to the target; returns seconds waited.

    Compares end offsets only (IdentityReplicationPolicy keeps names; fresh lab topics keep offsets aligned), so
    it waits without writing anything of its own into the service's topics.
    """
    start = time.monotonic()
    want = end_offsets(source_bootstrap, [topic])
    while True:
        have = end_offsets(target_bootstrap, [topic])
        if all(have.get(tp, 0) >= end for tp, end in want.items()):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"MirrorMaker 2 did not copy topic {topic!r} to {target_bootstrap} in {timeout:.0f} s")
        time.sleep(0.5)
