"""One region of the lab: its stack's PostgreSQL server, Kafka cluster and service stand-in, each an object.

`lab.region("prod")` (or `lab.prod`, `lab.dr`) returns the Region; `lab.prod.postgres.kill()` crashes prod's
postmaster, `lab.dr.kafka.bootstrap` is dr's cluster for host clients. A part acts on its own region alone; what
spans both (up, down, status, the pair's reset, MirrorMaker, applying the workloads) stays on the Lab (lab/core.py).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.guard import GUARD
from drtopo import aws
from drtopo.fencing.lease import Lease
from drtopo.fencing.quorum import Quorum
from drtopo.fencing.store import lease_stores
from drtopo.outputs import load_outputs
from drtopo.settings import Settings, load_settings
from lab import kafka, kube, kube_workloads, postgres, process

if TYPE_CHECKING:
    from lab.core import Lab


class _Part:
    """A server of one region: its Region, the Lab and the stack's name at hand."""

    def __init__(self, region: Region) -> None:
        self._region, self._lab, self._stack = region, region.lab, region.stack


class PostgresServer(_Part):
    """The region's PostgreSQL server (lab/postgres.py): prod starts as the primary, dr as its standby."""

    def conninfo(self, dbname: str | None = None) -> str:
        """Host-side connection string (no password: PGPASSWORD); dbname defaults to the settings' database."""
        database = dbname or self._region.settings.database.name
        return postgres.conninfo(self._region.port("postgres"), database)

    @property
    def archive_command(self) -> str:
        """The archive command: the lab's folder, then the WAL agent's client, which returns once the agent has
        pushed the file into the stack's WAL bucket (lab/wal_agent.py says why not a direct push)."""
        return postgres.archive_command(self._lab.pg.archive_dir, f"{self._lab.wal_push_script} {self._stack} %f")

    def gated_conninfo(self, dbname: str | None = None) -> str:
        """Where a client outside the region connects: the region's gate (what the outputs name)."""
        database = dbname or self._region.settings.database.name
        return postgres.conninfo(self._region.gate_port("postgres"), database)

    def kill(self) -> int:
        """SIGKILL the postmaster (a crash); returns its PID. RuntimeError when no postmaster runs to be killed."""
        return postgres.crash(self._lab.root, self._lab.pg, self._stack)

    def stop(self) -> None:
        """A clean stop."""
        postgres.stop(self._lab.root, self._lab.pg, self._stack)

    def start(self) -> None:
        """Start the server on its port, unless it runs already."""
        lab = self._lab
        if postgres.live_pid(lab.root, lab.pg, self._stack) is None:
            postgres.start(lab.root, lab.pg, self._stack, self._region.port("postgres"), lab.password)


class KafkaCluster(_Part):
    """The region's single-broker KRaft cluster (lab/kafka.py): a listener for host clients, one for pods."""

    @property
    def bootstrap(self) -> str:
        """Where host clients reach the cluster (loopback)."""
        return f"{process.LOOPBACK}:{self._region.port('kafka')}"

    @property
    def pod_bootstrap(self) -> str:
        """Where the lab's pods reach the cluster: its pod listener, advertised as the node's address."""
        return f"{self._lab.node_ip}:{self._region.port('kafka_pods')}"

    @property
    def gated_bootstrap(self) -> str:
        """Where host clients outside the region reach the cluster: the region's gate (what the outputs name)."""
        return f"{process.LOOPBACK}:{self._region.gate_port('kafka')}"

    @property
    def pod_gated_bootstrap(self) -> str:
        """Where pods outside the region (the peer's MirrorMaker) reach the cluster: the gate, through the bridge."""
        return f"{self._lab.node_ip}:{self._region.gate_port('kafka-pods')}"

    def start(self) -> None:
        """Start the cluster (same ports, data kept) and create any missing topic of the stack's settings."""
        region = self._region
        pods = (self._lab.node_ip, region.port("kafka_pods"))
        gates = (
            region.port("kafka_gate"),
            region.gate_port("kafka"),
            region.port("kafka_pods_gate"),
            region.gate_port("kafka-pods"),
        )
        cluster = kafka.start_cluster(self._lab.root, self._stack, port=region.port("kafka"), pods=pods, gates=gates)
        kafka.create_topics(cluster.bootstrap, self._region.settings.kafka.topics)

    def stop(self) -> None:
        kafka.stop_cluster(self._lab.root, self._stack)


class ServiceStandIn(_Part):
    """The region's service stand-in: a Deployment of one pod (hostNetwork, on the node's address) over the
    region's database, in the region's namespace of the lab's Kubernetes; its count is the program's patch's (the
    standby's 0 after `lab up`: promote's application step scales it up)."""

    @property
    def url(self) -> str:
        """http://<node address>:<port>"""
        return f"http://{self._lab.node_ip}:{self._region.port('service')}"

    @property
    def gated_url(self) -> str:
        """Where clients outside the region reach the service: its gate (what the outputs name)."""
        return f"http://{process.LOOPBACK}:{self._region.gate_port('service')}"

    def pod(self) -> dict[str, Any] | None:
        """The stand-in's pod (the newest, not being deleted), or None."""
        found = kube_workloads.pods(self._lab.root, self._region.namespace, kube_workloads.SERVICE_APP)
        live = [p for p in found if not p["metadata"].get("deletionTimestamp")]
        return max(live, key=lambda p: p["metadata"]["creationTimestamp"]) if live else None

    def start(self, timeout: float = 60.0) -> None:
        """Scale the stand-in's Deployment to one pod and return once it listens (at once when its pod is ready and
        listening already)."""
        pod = self.pod()
        if (
            pod is not None
            and kube_workloads.pod_ready(pod)
            and process.port_open(self._region.port("service"), self._lab.node_ip)
        ):
            return
        namespace = self._region.namespace
        if kube_workloads.get(self._lab.root, "deployment", kube_workloads.SERVICE_APP, namespace) is None:
            self._lab.apply_workloads()
        kube_workloads.scale(self._lab.root, namespace, kube_workloads.SERVICE_APP, 1)
        self.wait(timeout)

    def declared_replicas(self) -> int:
        """The replicas the program's patch gives the stand-in for the stack's role now (standby: 0, pilot light)."""
        settings = self._region.settings
        return settings.application.replicas(settings.role)

    def settle(self, timeout: float = 60.0) -> None:
        """Wait for the count the program declared (after `apply_workloads`): listening when it is above 0, no pod
        left when it is 0."""
        if self.declared_replicas():
            self.wait(timeout)
        else:
            kube_workloads.wait_pods(self._lab.root, self._region.namespace, kube_workloads.SERVICE_APP, 0, timeout)

    def wait(self, timeout: float = 60.0) -> None:
        """Wait until the stand-in's pod runs and accepts connections (Kubernetes restarted or replaced it)."""
        node_ip, port = self._lab.node_ip, self._region.port("service")
        kube_workloads.wait_pods(self._lab.root, self._region.namespace, kube_workloads.SERVICE_APP, 1, timeout)
        deadline = time.monotonic() + timeout
        while not process.port_open(port, node_ip):
            if time.monotonic() > deadline:
                raise TimeoutError(f"service stand-in {self._stack} did not listen on {node_ip}:{port} in {timeout} s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Scale the stand-in's Deployment to 0 and wait until its pod is gone."""
        namespace = self._region.namespace
        kube_workloads.scale(self._lab.root, namespace, kube_workloads.SERVICE_APP, 0)
        kube_workloads.wait_pods(self._lab.root, namespace, kube_workloads.SERVICE_APP, 0, 60)

    def kill(self) -> int:
        """SIGKILL the stand-in's container process (a crash); Kubernetes restarts it. Returns the PID killed."""
        pod = self.pod()
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        if not statuses or not statuses[0].get("containerID"):
            raise kube.KubeError(f"service stand-in {self._stack} has no running container to kill")
        pid = kube.container_pid(self._lab.root, statuses[0]["containerID"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def delete_pod(self) -> str:
        """Delete the stand-in's pod (as an eviction or a node drain would); its ReplicaSet makes a new one. Returns
        the deleted pod's name."""
        pod = self.pod()
        if pod is None:
            raise kube.KubeError(f"service stand-in {self._stack} has no pod to delete")
        name = pod["metadata"]["name"]
        kube.kubectl(self._lab.root, "delete", "pod", name, "-n", self._region.namespace, "--wait=false")
        return name

    def wait_pod_gone(self, name: str, timeout: float = 60.0) -> None:
        """Wait until pod `name` of the region's namespace no longer exists (its containers stopped)."""
        deadline = time.monotonic() + timeout
        while kube_workloads.get(self._lab.root, "pod", name, self._region.namespace) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {name} still exists after {timeout:.0f} s")
            time.sleep(0.1)


class LeaseGuardPods(_Part):
    """The region's lease guard (components/guard.py, fencing.mode lease): the Deployment `drtopo-guard` of the
    program in the region's namespace, running `python -m scripts.guard`, and what it keeps in the lease stores."""

    def pods(self) -> list[dict[str, Any]]:
        found = kube_workloads.pods(self._lab.root, self._region.namespace, GUARD)
        return [p for p in found if not p["metadata"].get("deletionTimestamp")]

    def pod(self) -> dict[str, Any] | None:
        """The guard's pod (the newest, not being deleted), or None."""
        live = self.pods()
        return max(live, key=lambda p: p["metadata"]["creationTimestamp"]) if live else None

    def restarts(self) -> int:
        pod = self.pod()
        return sum(c.get("restartCount", 0) for c in (pod or {}).get("status", {}).get("containerStatuses") or [])

    def stop(self, timeout: float = 60.0) -> None:
        """Scale the guard's Deployment (if any) to 0 and wait until its pod is gone."""
        namespace = self._region.namespace
        if kube_workloads.get(self._lab.root, "deployment", GUARD, namespace) is not None:
            kube_workloads.scale(self._lab.root, namespace, GUARD, 0)
        self.wait_stopped(timeout)

    def wait_stopped(self, timeout: float = 60.0) -> None:
        kube_workloads.wait_pods(self._lab.root, self._region.namespace, GUARD, 0, timeout)

    def kill(self) -> int:
        """SIGKILL the guard's container process (a crash); Kubernetes restarts it. Returns the PID killed."""
        pod = self.pod()
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        if not statuses or not statuses[0].get("containerID"):
            raise kube.KubeError(f"the lease guard of {self._stack} has no running container to kill")
        pid = kube.container_pid(self._lab.root, statuses[0]["containerID"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def lease(self) -> Lease | None:
        """The newest lease record a majority of the three stores answer with, read from the emulator itself (past
        every gate: the lab's own view); None when none holds one."""
        settings = self._region.settings
        peer = self._lab.region(settings.peer_stack)
        own_outputs = load_outputs(self._region.outputs_path, self._stack)
        peer_outputs = load_outputs(peer.outputs_path, peer.stack)
        endpoint = self._lab.aws_endpoint
        stores = lease_stores(
            settings, own_outputs, peer_outputs, lambda region: aws.client("s3", region, endpoint_url=endpoint)
        )
        quorum = Quorum(stores)
        try:
            read = quorum.read(10.0)
        finally:
            quorum.close()
        return read.newest()

    def wait_renewing(self, timeout: float = 120.0) -> Lease:
        """Wait until the guard's pod runs and the lease's newest record is this stack's, renewed since; returns it."""
        kube_workloads.wait_pods(self._lab.root, self._region.namespace, GUARD, 1, timeout)
        deadline = time.monotonic() + timeout
        first: Lease | None = None
        while True:
            seen = self.lease()
            if seen is not None and seen.holder == self._stack:
                if first is None or seen.epoch != first.epoch:
                    first = seen
                elif seen.renewals > first.renewals:
                    return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"the lease guard of {self._stack} did not renew within {timeout:.0f} s: {seen}")
            time.sleep(0.2)


class Region:
    """One stack of the lab (prod or dr) and its servers."""

    def __init__(self, lab: Lab, stack: str) -> None:
        self.lab = lab
        self.stack = stack
        self.postgres = PostgresServer(self)
        self.kafka = KafkaCluster(self)
        self.service = ServiceStandIn(self)
        self.guard = LeaseGuardPods(self)

    def __repr__(self) -> str:
        return f"Region({self.stack!r}, root={str(self.lab.root)!r})"

    def port(self, kind: str) -> int:
        """The region's port of `kind` (postgres, kafka, kafka_pods, service), as chosen at `up` (lab.json)."""
        return self.lab._port(kind, self.stack)

    def gate_port(self, kind: str) -> int:
        """The port of the region's gate for `kind` (lab/gates.py KINDS) on loopback."""
        return int(self.lab._port("gates", self.stack)[kind])

    @property
    def aws_endpoint(self) -> str:
        """The region's AWS API endpoint: its gate in front of the lab's one emulator."""
        return f"http://{process.LOOPBACK}:{self.gate_port('aws')}"

    @property
    def settings(self) -> Settings:
        """The stack's settings, read from the project copy at each access (a drill's role switch rewrites it)."""
        return load_settings(self.stack, self.lab.project_dir)

    @property
    def namespace(self) -> str:
        """The stack's Kubernetes namespace in the lab (one per region, lab/project.py)."""
        return self.settings.kubernetes.namespace

    @property
    def outputs_path(self) -> Path:
        """root/outputs/<stack>.json: the keys of drtopo.outputs.StackOutputs, plus selfManaged."""
        return self.lab.root / "outputs" / f"{self.stack}.json"
