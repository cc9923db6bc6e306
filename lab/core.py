"""The lab: one region pair of real servers on loopback (see lab/API.md), started, inspected and stopped as a whole.

Everything lives under the lab root: `lab.json` (ports, non-secret), `env` (mode 0600, the only place holding the
PostgreSQL password), `project/` (the stack files for the lab), `outputs/<stack>.json`, `pg/`, `pids/`, `logs/`,
`kubeconfig` and `kube/` (the single-node Kubernetes of lab/kube.py).
Every process is recorded by PID the moment it starts, so `down` stops it even after a failed `up`.

The Lab holds what spans both regions (up, down, status, the pair's reset, MirrorMaker, the workloads, the env and the
emulator); each region is an object of lab/region.py, `lab.region(stack)` or `lab.prod` / `lab.dr`, with its
settings, outputs, namespace and its servers as parts: `lab.prod.postgres.kill()`, `lab.dr.kafka.bootstrap`,
`lab.prod.service.url`.

Kubernetes runs the program's own objects of both stacks (lab/kube_workloads.py): MirrorMaker 2 is the standby
stack's Deployment (the lab starts no MirrorMaker process of its own), the backup CronJobs run the lab's backup
image. Pods reach PostgreSQL, the emulator and Kafka (a second listener per broker, advertised as the node's
address) through the lab's bridge (lab/bridge.py) on the node's address; host clients keep using loopback.

Every connection that crosses a region boundary goes through that region's gate (lab/gates.py, one Toxiproxy
server): the outputs name the gated addresses (database, Kafka, service), the env names each region's AWS endpoint
behind its gate (DRTOPO_AWS_ENDPOINTS), the standby streams from the primary's gate, MirrorMaker consumes the source
cluster through the source's gate, and the kubeconfig has a context per stack whose server is the stack's gate.
`lab.partition(stack)`, `lab.heal()` and `lab.degrade(ms, jitter)` act on them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import yaml
from confluent_kafka import KafkaException

from components.backup_jobs import OUTPUTS_FILE
from components.guard import GUARD, guard_outputs
from components.kafka_mirror import NAME as MIRROR_APP
from drtopo.backup import wal
from drtopo.images import ecr_image
from drtopo.kafka.lag import mirrormaker_lag
from drtopo.mm2_properties import cluster_alias
from drtopo.outputs import bucket_outputs, load_outputs, outputs_document
from drtopo.settings import Role, Settings
from lab import (
    aws,
    gates,
    images,
    inbox,
    kafka,
    kube,
    kube_build,
    kube_objects,
    kube_workloads,
    postgres,
    process,
    registry,
    wal_agent,
)
from lab.project import (
    LAB_APPLICATION,
    LAB_LEASE,
    LAB_STACKS,
    REPO_DIR,
    WITNESS_REGION,
    StackEndpoints,
    replace_file,
    write_project,
)
from lab.region import Region

# MirrorMaker 2 runs the standby stack's rendered properties: the flow prod (us-east-1) -> dr (us-west-2).
MIRROR_STACK = "dr"
BASELINE_ROLES = {"prod": Role.PRIMARY, "dr": Role.STANDBY}
PRIMARY_STACK, STANDBY_STACK = "prod", "dr"
BRIDGE = "kube-bridge"
WAL_AGENT = "wal-agent"
# The lab's archive command uploads this many WAL files at once (`scripts.wal push --parallel`, as the runbook
# recommends for a self-managed primary): python -m bench.bench_restore shows the backlog it leaves.
WAL_PUSH_PARALLEL = 4
MIRROR_START_TIMEOUT_S = 180.0
# The emulator's random seed before the stacks' resources are made (lab/aws.py seed_random).
EMULATOR_SEED = 20261202
T = TypeVar("T")


def default_root() -> Path:
    return Path(os.environ.get("DRTOPO_LAB_DIR") or REPO_DIR / ".lab")


def service_process(stack: str) -> str:
    return f"service-{stack}"


class LabNotUp(RuntimeError):
    """The lab root has no state: `up` has not run there."""


class Lab:
    def __init__(self, root: Path | str | None = None, fencing: bool = False) -> None:
        """`fencing`: a lab started by `up` runs its stacks with the primary lease on (LAB_LEASE); a lab already up
        keeps what it was started with (`set_fencing` switches it)."""
        self._fencing = fencing
        self.root = Path(root) if root is not None else default_root()
        self.root = self.root.absolute()
        self.pg = postgres.PgLayout(self.root / "pg")
        self.timings: dict[str, float] = {}  # seconds per phase of the last `up`
        self.baseline_timings: dict[str, float] = {}  # seconds per phase of the last restore_baseline
        self._objects: dict[tuple[str, str], list[dict[str, Any]]] = {}  # rendered per (stack, view), reused
        self._regions = {stack: Region(self, stack) for stack in LAB_STACKS}
        # The application's replicas on the standby for this Lab object's project copies (None: the repository's,
        # pilot light); `set_application_standby` sets it for a warm-standby drill.
        self.application_standby: int | None = None

    # ---- regions ----------------------------------------------------------------------------------------------
    def region(self, stack: str) -> Region:
        """One region of the lab (lab/region.py): its settings, outputs, PostgreSQL, Kafka and service stand-in."""
        try:
            return self._regions[stack]
        except KeyError:
            raise ValueError(f"stack {stack!r} is unknown; expected one of {', '.join(LAB_STACKS)}") from None

    @property
    def prod(self) -> Region:
        return self.region("prod")

    @property
    def dr(self) -> Region:
        return self.region("dr")

    # ---- files ------------------------------------------------------------------------------------------------
    @property
    def project_dir(self) -> Path:
        return self.root / "project"

    @property
    def state_path(self) -> Path:
        return self.root / "lab.json"

    @property
    def env_path(self) -> Path:
        return self.root / "env"

    def _state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            raise LabNotUp(f"no lab at {self.root}; start one with `python -m lab up --root {self.root}`") from None

    @property
    def fencing_on(self) -> bool:
        """Whether the lab's stacks run with the primary lease (drtopo:fencing.mode lease, LAB_LEASE)."""
        try:
            return bool(self._state().get("fencing", False))
        except LabNotUp:
            return self._fencing

    def _port(self, kind: str, stack: str | None = None) -> Any:
        ports = self._state()["ports"]
        return ports[kind] if stack is None else ports[kind][stack]

    def image(self, name: str) -> str:
        """The local image `name` (backup, mirrormaker, service) this lab's containerd was given at `up`."""
        return str(self._state()["images"][name])

    @property
    def node_ip(self) -> str:
        """The Kubernetes node's lab-made address: where pods reach the lab's servers (through the bridge)."""
        return str(self._state()["node_ip"])

    def env(self) -> dict[str, str]:
        """The variables of root/env (what `set -a; . root/env` loads)."""
        try:
            text = self.env_path.read_text()
        except FileNotFoundError:
            raise LabNotUp(f"no lab at {self.root}; start one with `python -m lab up --root {self.root}`") from None
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, raw = line.partition("=")
            if sep and not key.startswith("#"):
                values[key] = shlex.split(raw)[0] if raw else ""
        return values

    @property
    def password(self) -> str:
        return self.env()["PGPASSWORD"]

    @property
    def aws_endpoint(self) -> str:
        """The emulator itself (the lab's own set-up and in-region agents); scripts use a region's gate."""
        return aws.endpoint_url(self._port("aws"))

    # ---- gates (lab/gates.py) ---------------------------------------------------------------------------------
    @property
    def gates(self) -> gates.Gates:
        return gates.Gates(self._port("gates")["api"])

    def stack_of(self, name: str) -> str:
        """The stack a stack or region name means (`prod` or `us-east-1`); `witness` (or its region) is the lease's
        witness region."""
        if name in (gates.WITNESS, WITNESS_REGION):
            return gates.WITNESS
        for region in self._regions.values():
            if name in (region.stack, region.settings.region):
                return region.stack
        names = [n for r in self._regions.values() for n in (r.stack, r.settings.region)] + [gates.WITNESS]
        raise ValueError(f"{name!r} is neither a stack nor a region of the lab; expected one of {', '.join(names)}")

    def partition(self, name: str, kinds: Iterable[str] | None = None) -> list[str]:
        """Cut the region (stack or region name) off from everything outside it; its servers keep running. `kinds`
        cuts only those gates (lab/gates.py KINDS: `aws` is the region's API endpoint alone)."""
        return self.gates.partition(self.stack_of(name), kinds)

    def heal(self, name: str | None = None) -> list[str]:
        """End the partition of one region (default: every region)."""
        return self.gates.heal(None if name is None else self.stack_of(name))

    def degrade(
        self, latency_ms: int, jitter_ms: int = 0, bandwidth_kbps: int = 0, kinds: Iterable[str] | None = None
    ) -> list[str]:
        """The WAN between the regions: `latency_ms` round trip (`jitter_ms`) on every gate (or those of `kinds`,
        e.g. gates.WAN_KINDS), and a cap of `bandwidth_kbps` KB/s per connection when given; all 0 takes it away.

        Taking it away under traffic can hang Toxiproxy's API (removing a toxic from a link blocked on its peer:
        Shopify/toxiproxy#558, open); then the gates' server is restarted (`restart_gates`: every gate open and
        undegraded, their connections closed, clients reconnect) and its proxies are returned."""
        if latency_ms or jitter_ms or bandwidth_kbps:
            return self.gates.degrade(latency_ms, jitter_ms, bandwidth_kbps, kinds)
        try:
            return self.gates.degrade(0, 0, 0, kinds)
        except gates.GateError:
            self.restart_gates()
            return self.gates.names()

    def restart_gates(self) -> None:
        """The gates' Toxiproxy server stopped (killed when its API does not answer) and started again with every
        proxy open and without toxics: each connection through a gate is closed, and new ones pass."""
        process.kill(self.root, gates.PROCESS_NAME)
        process.stop(self.root, gates.PROCESS_NAME)
        gates.spawn(self.root, self._port("gates")["api"])
        deadline = time.monotonic() + 15
        while True:
            try:
                self.gates.create(self._gate_proxies())
                return
            except gates.GateError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def reset_links(self, name: str, kinds: Iterable[str] | None = None, after_ms: int = 0) -> list[str]:
        """The region's gates (or those of `kinds`) reset every connection `after_ms` after its first bytes, until
        `stop_resets` (or the baseline)."""
        return self.gates.reset_peer(self.stack_of(name), kinds, after_ms)

    def stop_resets(self, name: str | None = None) -> list[str]:
        return self.gates.stop_resets(None if name is None else self.stack_of(name))

    def _gate_proxies(self) -> list[gates.Proxy]:
        ports = self._state()["ports"]
        node_ip = self.node_ip
        upstreams = {
            "postgres": lambda s: f"{process.LOOPBACK}:{ports['postgres'][s]}",
            "kafka": lambda s: f"{process.LOOPBACK}:{ports['kafka_gate'][s]}",
            "kafka-pods": lambda s: f"{process.LOOPBACK}:{ports['kafka_pods_gate'][s]}",
            "service": lambda s: f"{node_ip}:{ports['service'][s]}",
            "aws": lambda s: f"{process.LOOPBACK}:{ports['aws']}",
            "kube": lambda s: f"{node_ip}:{kube.KubePorts().apiserver}",
            "registry": lambda s: f"{process.LOOPBACK}:{ports['registry'][s]}",
        }
        proxies = [
            gates.Proxy(gates.proxy_name(s, kind), ports["gates"][s][kind], upstreams[kind](s))
            for s in LAB_STACKS
            for kind in gates.KINDS
        ]
        witness = ports["gates"].get(gates.WITNESS, {})
        if witness:
            emulator = f"{process.LOOPBACK}:{ports['aws']}"
            proxies.append(gates.Proxy(gates.proxy_name(gates.WITNESS, "aws"), witness["aws"], emulator))
        # A region's way out to another region's AWS endpoint: through its own gate, then the other's (chained).
        for s in LAB_STACKS:
            for kind, port in ports["gates"][s].items():
                if kind.startswith(gates.EGRESS):
                    to = kind.removeprefix(gates.EGRESS)
                    upstream = f"{process.LOOPBACK}:{ports['gates'][to]['aws']}"
                    proxies.append(gates.Proxy(gates.proxy_name(s, kind), port, upstream))
        return proxies

    def _start_gates(self) -> None:
        gates.spawn(self.root, self._port("gates")["api"])
        self.gates.create(self._gate_proxies())

    def aws_endpoints(self) -> dict[str, str]:
        """Each region's AWS endpoint: its gate in front of the one emulator (the lease's witness region too)."""
        endpoints = {r.settings.region: r.aws_endpoint for r in self._regions.values()}
        witness = self._port("gates").get(gates.WITNESS)
        if witness:
            endpoints[WITNESS_REGION] = f"http://{process.LOOPBACK}:{witness['aws']}"
        return endpoints

    def pod_aws_endpoints(self, stack: str) -> dict[str, str]:
        """Each region's AWS endpoint as `stack`'s pods reach it (through the bridge on the node's address): their
        own region's emulator directly (in-region), any other region's through `stack`'s egress gate to it."""
        node, ports = self.node_ip, self._port("gates")[stack]
        endpoints = {self.region(stack).settings.region: f"http://{node}:{self._port('aws')}"}
        others = {r.stack: r.settings.region for r in self._regions.values() if r.stack != stack}
        others[gates.WITNESS] = WITNESS_REGION
        for to, region in others.items():
            port = ports.get(gates.egress_kind(to))
            if port:
                endpoints[region] = f"http://{node}:{port}"
        return endpoints

    def _add_gated_contexts(self) -> None:
        """A kubeconfig context per stack (named as its settings' kubernetes.context) whose server is the stack's
        gate; the certificate is still checked, against the node's address (tls-server-name)."""
        path = kube.Layout(self.root).kubeconfig
        document = yaml.safe_load(path.read_text())
        (base,) = [c for c in document["clusters"] if c["name"] == document["contexts"][0]["context"]["cluster"]]
        user = document["contexts"][0]["context"]["user"]
        for region in self._regions.values():
            name = region.settings.kubernetes.context
            cluster = {
                **base["cluster"],
                "server": f"https://{process.LOOPBACK}:{region.gate_port('kube')}",
                "tls-server-name": self.node_ip,
            }
            document["clusters"] = [c for c in document["clusters"] if c["name"] != name]
            document["clusters"].append({"name": name, "cluster": cluster})
            document["contexts"] = [c for c in document["contexts"] if c["name"] != name]
            document["contexts"].append({"name": name, "context": {"cluster": name, "user": user}})
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w") as out:
            out.write(yaml.safe_dump(document, sort_keys=False))

    # ---- lifecycle --------------------------------------------------------------------------------------------
    def up(self) -> float:
        """Start everything; returns the seconds taken (0 when it was already fully up).

        A partly running lab (some server stopped) is stopped and rebuilt from scratch; a failure stops whatever
        had started before it raises.
        """
        if self.is_up():
            return 0.0
        start = time.monotonic()
        self.down()
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return time.monotonic() - start

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = time.monotonic() - start

    def _build(self) -> None:
        self.timings.clear()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(self.root.stat().st_mode | 0o011)  # postgres must traverse into pg/
        ports = {
            "aws": process.free_port(),
            "wal_agent": process.free_port(),
            "inbox": process.free_port(),
            **{
                kind: {s: process.free_port() for s in LAB_STACKS}
                for kind in ("postgres", "service", "kafka", "kafka_pods", "kafka_gate", "kafka_pods_gate", "registry")
            },
            "gates": {
                "api": process.free_port(),
                **{
                    s: {
                        **{kind: process.free_port() for kind in gates.KINDS},
                        **{
                            gates.egress_kind(to): process.free_port()
                            for to in (*(o for o in LAB_STACKS if o != s), gates.WITNESS)
                        },
                    }
                    for s in LAB_STACKS
                },
                gates.WITNESS: {"aws": process.free_port()},
            },
        }
        network = kube.choose_network(self.root)
        archives = images.archives()  # fails fast, asking for `make images`
        plan = images.plan()
        state = {
            "ports": ports,
            "node_ip": network.node_ip,
            "images": {n: plan[n].ref for n in archives},
            "fencing": self._fencing,
        }
        self.state_path.write_text(json.dumps(state, indent=2) + "\n")
        shutil.rmtree(self.root / "kafka", ignore_errors=True)  # a fresh lab gets fresh clusters on its new ports
        self._write_project(BASELINE_ROLES)
        self._write_env(secrets.token_urlsafe(24), aws.endpoint_url(ports["aws"]))
        moto_pid = aws.spawn(self.root, ports["aws"])
        with self._phase("gates"):
            self._start_gates()
        self._start_inbox(ports["inbox"])
        self._start_wal_agent()
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="lab-up") as pool:
            # The emulator, Kafka and Kubernetes need only the project copy, so they start while PostgreSQL is built.
            emulator = pool.submit(self._timed, "emulator", self._start_emulator, ports["aws"], moto_pid)
            kafka_started = pool.submit(self._timed, "kafka", self._start_kafka_clusters)
            loaded = list(archives.values())
            cluster = pool.submit(self._timed, "kubernetes", kube.start, self.root, None, network, loaded)
            with self._phase("initdb"):
                database = self.region(PRIMARY_STACK).settings.database
                postgres.prepare(self.pg, self.password, database.archive_timeout_seconds, database.name, self.root)
            with self._phase("postgres pair"):
                # Archiving reaches the WAL bucket: the emulator and the outputs naming it must be there first.
                self._build_pg_pair(lambda: self._write_outputs(emulator.result()))
            kafka_started.result()
            cluster.result()
        self._add_gated_contexts()
        with self._phase("bridge"):
            self._start_bridge()
        with self._phase("workloads"):
            self.apply_workloads()
            for stack in LAB_STACKS:
                self.region(stack).service.settle()
            self.start_mirrormaker()
            if self.fencing_on:
                self.wait_guards()

    def _timed(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        with self._phase(name):
            return fn(*args)

    def _start_emulator(self, port: int, pid: int) -> dict[str, aws.StackResources]:
        process.wait_port(port, 60, "moto_server", pid)
        return self._seed_emulator()

    def _seed_emulator(self) -> dict[str, aws.StackResources]:
        """Both stacks' resources, made after the same seed of the emulator's ids each time (EMULATOR_SEED): a reseed
        names them as before, so the outputs and the workloads rendered from them stay as they were."""
        aws.seed_random(self.aws_endpoint, EMULATOR_SEED)
        stacks = {s: self.region(s).settings for s in LAB_STACKS}
        return aws.seed(self.aws_endpoint, stacks, self.inbox_url, self.password)

    # ---- container registries (lab/registry.py) -----------------------------------------------------------------
    def registry_host(self, stack: str) -> str:
        """The ECR host the stack's own images name (its settings' backup image), e.g.
        `123456789012.dkr.ecr.us-west-2.amazonaws.com`."""
        image = self.region(stack).settings.kubernetes.backup_image
        found = ecr_image(image)
        if found is None:
            raise ValueError(f"{stack}'s backup image {image} names no ECR registry; the lab serves ECR hosts only")
        return image.split("/", 1)[0]

    def start_registries(self) -> None:
        """Each region's registry (those not running yet), and the node's containerd told to pull each region's ECR
        host through that region's gate (plain HTTP)."""
        hosts = kube.registry_hosts_dir(kube.Layout(self.root))
        for stack in LAB_STACKS:
            name = registry.process_name(stack)
            if not process.running(self.root, name):
                registry.start(self.root, stack, self._port("registry", stack))
            server = f"http://{self.node_ip}:{self.region(stack).gate_port('registry')}"
            folder = hosts / self.registry_host(stack)
            folder.mkdir(parents=True, exist_ok=True)
            replace_file(folder / "hosts.toml", registry.hosts_toml(server))

    def stop_registry(self, name: str) -> None:
        """The region's registry stops (a registry outage; `start_registries` brings it back)."""
        process.stop(self.root, registry.process_name(self.stack_of(name)))

    def registry_log(self, name: str) -> str:
        """The region's registry's log (its access log: each request, with the client's user agent)."""
        path = self.root / "logs" / f"{registry.process_name(self.stack_of(name))}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def registry_digest(self, name: str, repository: str, tag: str) -> str:
        """The manifest digest of `repository:tag` in the region's registry (read directly, not through its gate)."""
        return registry.manifest_digest(self._port("registry", self.stack_of(name)), repository, tag)

    def publish_image(self, name: str = "backup") -> dict[str, str]:
        """The lab image `name` pushed to the primary's registry under the repository and tag the stacks name, and
        copied to the peer's registry through the primary's gate (ECR's replication); returns each stack's image
        reference (its own region's ECR host)."""
        self.start_registries()
        declared = {"backup": "backup_image", "mirrormaker": "mirror_maker_image"}
        if name not in declared:
            raise ValueError(f"lab image {name!r} is not one the stacks declare; expected one of {sorted(declared)}")
        refs = {s: str(getattr(self.region(s).settings.kubernetes, declared[name])) for s in LAB_STACKS}
        repository, tag = refs[PRIMARY_STACK].split("/", 1)[1].rsplit(":", 1)
        registry.push(images.archives()[name], self._port("registry", PRIMARY_STACK), repository, tag)
        source = self.region(PRIMARY_STACK).gate_port("registry")
        registry.replicate(source, self._port("registry", STANDBY_STACK), repository, tag)
        return refs

    # ---- the incident inbox (lab/inbox.py) --------------------------------------------------------------------
    @property
    def inbox_url(self) -> str:
        return inbox.url(self._port("inbox"))

    def _start_inbox(self, port: int) -> None:
        argv = [sys.executable, "-m", "lab.inbox", f"--port={port}", f"--file={inbox.inbox_file(self.root)}"]
        inbox.inbox_file(self.root).unlink(missing_ok=True)
        pid = process.spawn(self.root, inbox.PROCESS_NAME, argv, env={"PYTHONPATH": str(REPO_DIR)}, cwd=REPO_DIR)
        process.wait_port(port, 30, inbox.PROCESS_NAME, pid)

    def inbox(self) -> list[dict[str, Any]]:
        """What the inbox received from both incident topics, oldest first (lab/inbox.py `received`)."""
        return inbox.received(self.root)

    def _write_env(self, password: str, endpoint: str) -> None:
        values = {
            "AWS_ENDPOINT_URL": endpoint,
            **aws.DUMMY_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region(PRIMARY_STACK).settings.region,
            # Each region's API through its gate (drtopo.aws.use_endpoints); AWS_ENDPOINT_URL, the emulator itself,
            # stays for tools that know no per-region endpoints.
            "DRTOPO_AWS_ENDPOINTS": ",".join(f"{r}={url}" for r, url in self.aws_endpoints().items()),
            "AWS_EC2_METADATA_DISABLED": "true",
            "PGPASSWORD": password,
            # The service's API token, where validate reads it (the environment variable settings name).
            self.region(PRIMARY_STACK).settings.service.api_auth_env: kube_workloads.service_token(password),
            "DRTOPO_PROJECT_DIR": str(self.project_dir),
            "DRTOPO_LAB_DIR": str(self.root),
            "KUBECONFIG": str(kube.Layout(self.root).kubeconfig),
            # The lab's kubectl first, for the scripts that export and restore Kubernetes objects.
            "PATH": f"{self._tools_dir()}:{os.environ.get('PATH', os.defpath)}",
        }
        text = "# drtopo lab: `set -a; . <this file>` loads it\n"
        text += "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())
        fd = os.open(self.env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        self.env_path.chmod(0o600)

    def _tools_dir(self) -> Path:
        """<root>/bin, holding the lab's kubectl (a link into the build cache)."""
        folder = self.root / "bin"
        folder.mkdir(exist_ok=True)
        link = folder / "kubectl"
        link.unlink(missing_ok=True)
        link.symlink_to(kube_build.binary("kubectl"))
        return folder

    def _gated_endpoints(self) -> dict[str, StackEndpoints]:
        """Where outside clients reach each stack: its gate's ports on loopback (the outputs name these)."""
        ports = self._state()["ports"]["gates"]
        return {
            s: StackEndpoints(
                db_port=ports[s]["postgres"],
                kafka_port=ports[s]["kafka"],
                service_port=ports[s]["service"],
                service_host=process.LOOPBACK,
            )
            for s in LAB_STACKS
        }

    def _write_project(self, roles: dict[str, Role]) -> None:
        # The stacks as the scripts see them, from outside their regions: the gates (as the outputs).
        write_project(
            self.project_dir,
            self._gated_endpoints(),
            roles,
            standby_replicas=self.application_standby,
            fencing=LAB_LEASE if self.fencing_on else None,
        )

    def set_application_standby(self, replicas: int) -> None:
        """Pilot light (0) or warm standby (N) from now on: the standby's application count in the project copy
        (roles at baseline), applied. At most the lab's primary count (one host port per node)."""
        if not 0 <= replicas <= LAB_APPLICATION["primaryReplicas"]:
            raise ValueError(
                f"standby application replicas {replicas} is outside what the lab runs: 0 to "
                f"{LAB_APPLICATION['primaryReplicas']} (one stand-in per node and region)"
            )
        self.application_standby = replicas
        self._write_project(BASELINE_ROLES)
        self.apply_application()

    # ---- the primary lease (drtopo/fencing/; the guards: lab/region.py) ----------------------------------------
    def set_fencing(self, on: bool, timeout: float = 120.0) -> None:
        """Switch the primary lease on or off in a running lab, keeping the stacks' roles: the stack files, the
        lease stores in the emulator, the guards' Deployments (the primary's guard running and renewing, as
        `pulumi up` of each stack would leave them), or, off, no guard at all."""
        state = self._state()
        state["fencing"] = on
        self.state_path.write_text(json.dumps(state, indent=2) + "\n")
        self._write_project({s: self.region(s).settings.role for s in LAB_STACKS})
        if on:
            self._lease_stores()
            self.apply_workloads()
            self.wait_guards(timeout)
        else:
            self.remove_guards(timeout)

    def _lease_stores(self) -> None:
        for region in self._regions.values():
            key = load_outputs(region.outputs_path, region.stack).kms_key_arn
            aws.lease_stores(region.settings, self.aws_endpoint, key)

    def wait_guards(self, timeout: float = 120.0) -> None:
        """Each stack's guard as its role wants it: the primary's pod running and renewing the lease as its holder,
        the standby's none."""
        for region in self._regions.values():
            if region.settings.is_primary:
                region.guard.wait_renewing(timeout)
            else:
                region.guard.wait_stopped(timeout)

    def remove_guards(self, timeout: float = 60.0) -> None:
        """Delete both stacks' guard Deployments and the guard's database Secret the lab gave them, and wait until
        the guards' pods are gone (the lease off: the namespaces hold what they held before it was on)."""
        for region in self._regions.values():
            kube.kubectl(
                self.root, "delete", "deployment", GUARD, "-n", region.namespace, "--ignore-not-found", "--wait=false"
            )
            secret = region.settings.fencing.database_secret
            kube.kubectl(self.root, "delete", "secret", secret, "-n", region.namespace, "--ignore-not-found")
        for region in self._regions.values():
            region.guard.wait_stopped(timeout)

    def _build_pg_pair(self, before_archiving: Callable[[], None]) -> None:
        """The pair and its base backup, in the lab's archive folder and the primary's WAL bucket. The primary
        archives nothing before its first WAL switch (the standby's clone), by which time `before_archiving` has
        made the bucket and the outputs its archive command reads."""
        password = self.password
        primary, standby = self.region(PRIMARY_STACK), self.region(STANDBY_STACK)
        primary_port, standby_port = primary.port("postgres"), standby.port("postgres")
        # The standby streams (and clones) through the primary's gate: replication crosses the region boundary.
        with self._baseline_phase("pg primary"):
            postgres.new_primary(self.pg, PRIMARY_STACK, primary_port, primary.postgres.archive_command)
            postgres.start(self.root, self.pg, PRIMARY_STACK, primary_port, password)
        with self._baseline_phase("pg wait emulator"):
            before_archiving()
        with self._baseline_phase("pg standby"):
            postgres.clone_standby(
                self.pg,
                STANDBY_STACK,
                standby_port,
                primary.gate_port("postgres"),
                password,
                standby.postgres.archive_command,
            )
            postgres.start(self.root, self.pg, STANDBY_STACK, standby_port, password)
        with self._baseline_phase("pg base backup"):
            postgres.base_backup(self.pg, primary_port, password)
            outputs = load_outputs(primary.outputs_path, PRIMARY_STACK)
            s3 = aws.client("s3", outputs.region, self.aws_endpoint)
            wal.push_base_backup(s3, outputs, self.pg.base_backup_dir)
        with self._baseline_phase("pg snapshot"):
            # Stopped cleanly for the copy (the primary first: its shutdown sends the standby every WAL record and
            # archives every finished segment), then started again.
            for stack in (PRIMARY_STACK, STANDBY_STACK):
                self.region(stack).postgres.stop()
            postgres.save_snapshot(self.pg, LAB_STACKS)
            for stack in (PRIMARY_STACK, STANDBY_STACK):
                postgres.start(self.root, self.pg, stack, self.region(stack).port("postgres"), password)

    @property
    def wal_push_script(self) -> Path:
        return self.root / "bin" / "wal-push"

    def _start_wal_agent(self) -> None:
        port = self._port("wal_agent")
        argv = [
            sys.executable,
            "-m",
            "lab.wal_agent",
            f"--port={port}",
            f"--archive={self.pg.archive_dir}",
            f"--outputs={self.root / 'outputs'}",
            f"--endpoint={self.aws_endpoint}",
            f"--stacks={','.join(LAB_STACKS)}",
            f"--parallel={WAL_PUSH_PARALLEL}",
            f"--spool={self.root / 'wal-spool'}",
            f"--pg-base={self.pg.base}",
        ]
        pid = process.spawn(self.root, WAL_AGENT, argv, env={"PYTHONPATH": str(REPO_DIR)}, cwd=REPO_DIR)
        self.wal_push_script.parent.mkdir(exist_ok=True)
        self.wal_push_script.write_text(wal_agent.client_script(self.wal_push_script, port))
        self.wal_push_script.chmod(0o755)
        process.wait_port(port, 30, WAL_AGENT, pid)

    def _write_outputs(self, resources: dict[str, aws.StackResources]) -> None:
        (self.root / "outputs").mkdir(exist_ok=True)
        endpoints = self._gated_endpoints()
        for region in self._regions.values():
            document = stack_outputs(region.settings, resources[region.stack], endpoints, self.pg)
            replace_file(region.outputs_path, json.dumps(document, indent=2) + "\n")

    def down(self) -> list[str]:
        """Stop every recorded process, clients before servers, in parallel within each wave; returns their names.
        The Kubernetes cluster goes first, with its pods, mounts and network namespace."""
        stopped = kube.stop(self.root)
        self._objects.clear()
        clients = [BRIDGE, WAL_AGENT, aws.PROCESS_NAME, gates.PROCESS_NAME, inbox.PROCESS_NAME]
        stopped += [n for n in clients if process.running(self.root, n)]
        stopped += [kafka.process_name(s) for s in LAB_STACKS if process.running(self.root, kafka.process_name(s))]
        stopped += [postgres.process_name(s) for s in LAB_STACKS if postgres.live_pid(self.root, self.pg, s)]
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="lab-down") as pool:
            list(pool.map(lambda name: process.stop(self.root, name, 20), clients))
            servers = [r.kafka.stop for r in self._regions.values()]
            servers += [r.postgres.stop for r in self._regions.values()]
            for future in [pool.submit(stop) for stop in servers]:
                future.result()
        stopped += self._stop_adopted_postmasters()
        stopped += process.stop_all(self.root)
        return stopped

    def _stop_adopted_postmasters(self) -> list[str]:
        """Postmasters a script started itself (pg_ctl, PITR instances) in any data dir under the lab's pg/."""
        stopped = []
        for pidfile in sorted(self.pg.base.glob("*/postmaster.pid")) if self.pg.base.is_dir() else []:
            pid = postgres.adopted_pid(self.pg, pidfile.parent.name)
            if pid is not None:
                postgres.stop_pid(pid)
                stopped.append(f"postmaster:{pidfile.parent.name}")
        return stopped

    def _expected_processes(self) -> list[str]:
        return [
            aws.PROCESS_NAME,
            gates.PROCESS_NAME,
            *(postgres.process_name(s) for s in LAB_STACKS),
            *(kafka.process_name(s) for s in LAB_STACKS),
            BRIDGE,
            WAL_AGENT,
            inbox.PROCESS_NAME,
            *(kube.process_name(c) for c in kube.PROCESSES),
        ]

    def _running(self, name: str) -> bool:
        for stack in LAB_STACKS:
            if name == postgres.process_name(stack):
                return postgres.live_pid(self.root, self.pg, stack) is not None
        return process.running(self.root, name)

    def is_up(self) -> bool:
        """Every server of the lab is running."""
        if not self.state_path.is_file() or not self.env_path.is_file():
            return False
        return all(self._running(n) for n in self._expected_processes())

    def status(self) -> dict[str, Any]:
        """Per server: port, pid, running, and for PostgreSQL its role and replication lag."""
        try:
            ports = self._state()["ports"]
        except LabNotUp:
            return {"root": str(self.root), "up": False, "servers": {}}
        password = self.password
        servers: dict[str, dict[str, Any]] = {}
        pg_status = {
            s: postgres.server_status(ports["postgres"][s], password)
            if postgres.live_pid(self.root, self.pg, s)
            else {"role": "down"}
            for s in LAB_STACKS
        }
        standby_rows = {row["name"]: row for st in pg_status.values() for row in st.get("standbys", [])}
        for stack in LAB_STACKS:
            name = postgres.process_name(stack)
            pid = postgres.live_pid(self.root, self.pg, stack)
            entry = {"port": ports["postgres"][stack], "pid": pid, "running": pid is not None, **pg_status[stack]}
            if entry.get("role") == "standby":
                row = standby_rows.get(stack)
                entry["lag_bytes"] = row["lag_bytes"] if row else None
                entry["lag_seconds"] = row["lag_seconds"] if row else entry.get("lag_seconds")
            entry.pop("standbys", None)
            servers[name] = entry
        servers[aws.PROCESS_NAME] = {"port": ports["aws"], "url": aws.endpoint_url(ports["aws"])}
        servers[aws.PROCESS_NAME].update(self._pid_info(aws.PROCESS_NAME))
        servers[gates.PROCESS_NAME] = {"port": ports["gates"]["api"], **self._pid_info(gates.PROCESS_NAME)}
        servers[inbox.PROCESS_NAME] = {"port": ports.get("inbox"), **self._pid_info(inbox.PROCESS_NAME)}
        for stack in LAB_STACKS:
            servers[service_process(stack)] = {
                "port": ports["service"][stack],
                "url": self.region(stack).service.url,
                **self._pod_info(stack, kube_workloads.SERVICE_APP),
            }
        servers.update(self._kafka_status())
        cluster = kube.status(self.root)
        servers.update(cluster.pop("processes"))
        try:
            gate_status: dict[str, Any] = self.gates.status() if servers[gates.PROCESS_NAME]["running"] else {}
        except gates.GateError as exc:
            gate_status = {"error": str(exc)}
        return {
            "root": str(self.root),
            "up": self.is_up(),
            "servers": servers,
            "kubernetes": cluster,
            "gates": gate_status,
        }

    def _pid_info(self, name: str) -> dict[str, Any]:
        pid = process.read_pid(self.root, name)
        return {"pid": pid, "running": pid is not None and process.alive(pid)}

    # ---- PostgreSQL (each server: lab/region.py) --------------------------------------------------------------
    def reset_postgres(self) -> None:
        """A fresh pair (prod primary, dr standby), archive and base backup; roles, outputs and emulator reset too.

        The pair as first built is kept (postgres.save_snapshot, at the end of _build_pg_pair): a reset copies it
        back and starts it, and gives the reseeded WAL bucket the same base backup and archived WAL again, instead
        of cloning a new pair (the files and the bucket are those of a fresh build; only their timestamps are older).
        """
        with self._baseline_phase("pg stop"):
            for region in self._regions.values():
                region.postgres.stop()
            self._stop_adopted_postmasters()
        self._write_project(BASELINE_ROLES)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-emulator") as pool:
            emulator = pool.submit(self._timed_baseline, "reseed", self._reseed)
            with self._baseline_phase("pg copy"):
                copied = postgres.restore_snapshot(self.pg, LAB_STACKS) is not None
                if not copied:
                    postgres.reset_data(self.pg)
            with self._baseline_phase("pg pair"):
                if copied:
                    self._start_copied_pair(lambda: self._write_outputs(emulator.result()))
                else:
                    self._build_pg_pair(lambda: self._write_outputs(emulator.result()))
        self.apply_application()

    def apply_application(self) -> None:
        """The program's application patches for the stacks' roles now (the primary's stand-in up, the standby's at
        its declared count), as `pulumi up` of both stacks would apply them; returns once each count is reached."""
        patches = [o for s in LAB_STACKS for o in self.workload_objects(s) if kube_objects.patch_manager(o)]
        kube_objects.apply(self.root, patches)
        for region in self._regions.values():
            region.service.settle()

    def _start_copied_pair(self, before_start: Callable[[], None]) -> None:
        """The pair copied back from its snapshot: the bucket gets the archived WAL and the base backup a fresh
        build leaves there (`before_start` writes the outputs naming it), then the primary and its standby start."""
        before_start()
        outputs = load_outputs(self.region(PRIMARY_STACK).outputs_path, PRIMARY_STACK)
        s3 = aws.client("s3", outputs.region, self.aws_endpoint)
        archived = sorted(p for p in self.pg.archive_dir.iterdir() if p.is_file())
        # The servers start while the bucket is filled: the primary archives only segments newer than these.
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="lab-wal") as pool:
            pushed = [pool.submit(wal.push, s3, outputs, p, p.name) for p in archived]
            pushed.append(pool.submit(wal.push_base_backup, s3, outputs, self.pg.base_backup_dir))
            for stack in (PRIMARY_STACK, STANDBY_STACK):
                postgres.start(self.root, self.pg, stack, self.region(stack).port("postgres"), self.password)
            for future in pushed:
                future.result()

    def _reseed(self) -> dict[str, aws.StackResources]:
        aws.reset(self.aws_endpoint)
        return self._seed_emulator()

    def restore_baseline(self) -> None:
        """After a drill: every gate open, fresh PostgreSQL pair and emulator, and every other server running again.

        Each part is put back only as far as it differs (a running Kafka cluster or service stand-in is checked, not
        restarted; PostgreSQL's files are copied back only where they changed); the Kafka clusters start while the
        pair and the emulator are reset. lab.baseline_timings says where the time went."""
        self.baseline_timings.clear()
        with self._baseline_phase("gates"):
            try:
                self.gates.heal()
                self.gates.reset()
            except gates.GateError:
                # Its API hung (Shopify/toxiproxy#558: a toxic removed under traffic): a new server, every gate open.
                self.restart_gates()
        # A guard keeps what it decided (a fence it never lifts by itself): none may outlive the pair it guarded.
        with self._baseline_phase("guards stopped"):
            for region in self._regions.values():
                region.guard.stop()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-kafka-baseline") as pool:
            clusters = pool.submit(self._timed_baseline, "kafka", self._start_kafka_clusters)
            self.reset_postgres()
            clusters.result()
        with self._baseline_phase("services"):
            self.apply_workloads()
            for region in self._regions.values():
                region.service.settle()
        with self._baseline_phase("workloads and mirrormaker"):
            self.start_mirrormaker()  # applies both stacks' objects, as the roles now are, first
        if self.fencing_on:
            with self._baseline_phase("lease guards"):
                self.wait_guards()

    @contextlib.contextmanager
    def _baseline_phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.baseline_timings[name] = time.monotonic() - start

    def _timed_baseline(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        with self._baseline_phase(name):
            return fn(*args)

    # ---- Kafka (each cluster: lab/region.py) ------------------------------------------------------------------
    def _start_kafka_clusters(self) -> None:
        """Both clusters (JVMs in parallel) with the settings' topics."""
        with ThreadPoolExecutor(max_workers=len(LAB_STACKS), thread_name_prefix="lab-kafka") as pool:
            for future in [pool.submit(r.kafka.start) for r in self._regions.values()]:
                future.result()

    def mirror_stack(self) -> str:
        """The stack whose MirrorMaker runs: the standby in the project copy (its Deployment has one replica), so
        after a role switch `start_mirrormaker` mirrors the other way; dr while the roles are ambiguous."""
        standbys = [r.stack for r in self._regions.values() if r.settings.role is Role.STANDBY]
        return standbys[0] if len(standbys) == 1 else MIRROR_STACK

    def mirrormaker_properties(self, stack: str | None = None) -> str:
        """What MirrorMaker 2 of `stack` (default the mirror stack) runs: render_mm2_properties of its settings in
        the project copy, with the pod-side bootstrap addresses."""
        region = self.region(stack or self.mirror_stack())
        settings = region.settings
        return kafka.mirrormaker_properties(
            settings, self.region(settings.peer_stack).kafka.pod_gated_bootstrap, region.kafka.pod_bootstrap
        )

    def _pod_view(self, stack: str) -> kube_objects.PodView:
        region = self.region(stack)
        settings = region.settings
        document = json.loads(region.outputs_path.read_text())
        peer = self.region(settings.peer_stack)
        bootstraps = {"own": region.kafka.pod_bootstrap, "peer": peer.kafka.pod_gated_bootstrap}
        # The stack's own pods reach their own database directly (in-region), not through the gate the outputs name.
        outputs = {**kube_workloads.pod_outputs(document, self.node_ip, bootstraps), "dbPort": region.port("postgres")}
        stack_file = self.project_dir / f"Pulumi.{stack}.yaml"
        # The readiness check reads the pair: the peer's database directly at the node (as its own), not its gate.
        peer_document = json.loads(peer.outputs_path.read_text())
        peer_bootstraps = {"own": peer.kafka.pod_bootstrap, "peer": region.kafka.pod_gated_bootstrap}
        peer_outputs = {
            **kube_workloads.pod_outputs(peer_document, self.node_ip, peer_bootstraps),
            "dbPort": peer.port("postgres"),
        }
        peer_file = self.project_dir / f"Pulumi.{peer.stack}.yaml"
        guard_files: dict[str, str] = {}
        if self.fencing_on:
            own = guard_outputs(outputs, settings.fencing.database_role)
            guard_files = {
                OUTPUTS_FILE: json.dumps(own, indent=2, sort_keys=True),
                f"{peer.stack}.json": json.dumps(peer_outputs, indent=2, sort_keys=True),
                stack_file.name: stack_file.read_text(),
            }
        return kube_objects.PodView(
            guard_files=guard_files,
            guard_env=kube_workloads.guard_env(
                self.pod_aws_endpoints(stack),
                f"http://{self.node_ip}:{self._port('aws')}",
                (self.node_ip, kube.KubePorts().apiserver),
            )
            if self.fencing_on
            else (),
            images={
                settings.kubernetes.backup_image: self.image("backup"),
                settings.kubernetes.mirror_maker_image: self.image("mirrormaker"),
            },
            mm2_properties=self.mirrormaker_properties(stack),
            backup_files={
                "outputs.json": json.dumps(outputs, indent=2, sort_keys=True),
                stack_file.name: stack_file.read_text(),
            },
            readiness_files={
                f"{stack}.json": json.dumps(outputs, indent=2, sort_keys=True),
                f"{peer.stack}.json": json.dumps(peer_outputs, indent=2, sort_keys=True),
                stack_file.name: stack_file.read_text(),
                peer_file.name: peer_file.read_text(),
            },
            job_env=kube_workloads.job_env(
                f"http://{self.node_ip}:{self._port('aws')}", (self.node_ip, kube.KubePorts().apiserver)
            ),
            app_endpoints=(
                settings.application.endpoints_config_map,
                {
                    "DATABASE_WRITER_HOST": self.node_ip,
                    "DATABASE_WRITER_PORT": str(region.port("postgres")),
                    "KAFKA_BOOTSTRAP_SERVERS": region.kafka.pod_bootstrap,
                    "KAFKA_BACKUP_BOOTSTRAP_SERVERS": peer.kafka.pod_gated_bootstrap,
                },
            ),
        )

    def workload_objects(self, stack: str) -> list[dict[str, Any]]:
        """The program's objects of `stack` as the lab applies them, and the Secrets the program expects."""
        region = self.region(stack)
        view = self._pod_view(stack)
        cache_key = (stack, repr(view))
        if cache_key not in self._objects:
            self._objects[cache_key] = kube_objects.program_objects(region.settings, view)
        settings = region.settings
        namespace, database_secret = settings.kubernetes.namespace, settings.kubernetes.database_secret
        secrets = [
            kube_workloads.secret_object(namespace, database_secret, {"password": self.password}),
            kube_workloads.secret_object(namespace, kube_workloads.LAB_AWS_SECRET, dict(aws.DUMMY_CREDENTIALS)),
            kube_workloads.secret_object(
                namespace, kube_workloads.SERVICE_TOKEN_SECRET, {"token": kube_workloads.service_token(self.password)}
            ),
        ]
        if self.fencing_on:
            # The guard's database role's password (fencing.databaseSecret): the lab's one role (LAB_LEASE).
            guard_secret = settings.fencing.database_secret
            secrets.append(kube_workloads.secret_object(namespace, guard_secret, {"password": self.password}))
        database = {
            "host": self.node_ip,
            "port": str(region.port("postgres")),
            "dbname": settings.database.name,
            "user": postgres.SUPERUSER,
        }
        service = kube_workloads.service_objects(
            namespace,
            self.image("service"),
            self.node_ip,
            region.port("service"),
            database,
            database_secret,
            settings.application.endpoints_config_map,
            cluster_alias(settings.region),
        )
        return [*secrets, *self._objects[cache_key], *service]

    def apply_workloads(self) -> None:
        """Server-side apply both stacks' objects (as `pulumi up` of each stack would, with the current roles)."""
        kube_objects.apply(self.root, [o for s in LAB_STACKS for o in self.workload_objects(s)])

    def start_mirrormaker(self, timeout: float = MIRROR_START_TIMEOUT_S) -> None:
        """Apply the objects (the standby's MirrorMaker Deployment gets its replica back, the primary's none) and
        return once the pod runs and every enabled flow's source task runs (from its Connect status topic)."""
        since_ms = int(time.time() * 1000) - 1000
        stack = self.mirror_stack()
        namespace = self.region(stack).namespace
        before = {p["metadata"]["uid"] for p in kube_workloads.pods(self.root, namespace, MIRROR_APP)}
        self.apply_workloads()
        for other in (r for r in self._regions.values() if r.stack != stack):
            kube_workloads.wait_pods(self.root, other.namespace, MIRROR_APP, 0, timeout)
        (pod,) = kube_workloads.wait_pods(self.root, namespace, MIRROR_APP, 1, timeout)
        # The same pod as before runs the same text (its flows' RUNNING records may be older); a new one must say so.
        same_pod = pod["metadata"]["uid"] in before
        kafka.wait_flows(self.mirrormaker_properties(stack), 0 if same_pod else since_ms, timeout)

    def stop_mirrormaker(self) -> None:
        """Scale the mirror stack's MirrorMaker Deployment to 0 and wait until its pod is gone."""
        namespace = self.region(self.mirror_stack()).namespace
        kube_workloads.scale(self.root, namespace, MIRROR_APP, 0)
        kube_workloads.wait_pods(self.root, namespace, MIRROR_APP, 0, 120)

    def _start_bridge(self) -> None:
        ports = [
            *(self._port("postgres", s) for s in LAB_STACKS),
            self._port("aws"),
            *(self._port("gates", s)["kafka-pods"] for s in LAB_STACKS),
            # The node's containerd pulls each region's ECR host name through that region's gate (lab/registry.py).
            *(self._port("gates", s)["registry"] for s in LAB_STACKS),
            *(self._port("kafka_pods", s) for s in LAB_STACKS),
            *(
                port
                for s in LAB_STACKS
                for kind, port in self._port("gates", s).items()
                if kind.startswith(gates.EGRESS)
            ),
        ]
        network = kube.cluster_network(self.root)
        argv = [
            sys.executable,
            "-m",
            "lab.bridge",
            f"--netns={network.netns_path}",
            f"--listen={network.node_ip}",
            f"--ports={','.join(map(str, ports))}",
        ]
        pid = process.spawn(self.root, BRIDGE, argv, env={"PYTHONPATH": str(REPO_DIR)}, cwd=REPO_DIR)
        deadline = time.monotonic() + 30
        while not process.port_open(ports[-1], network.node_ip):
            if not process.alive(pid) or time.monotonic() > deadline:
                raise RuntimeError(f"the lab's bridge did not listen on {network.node_ip}; see {self.root / 'logs'}")
            time.sleep(0.1)

    def _kafka_status(self) -> dict[str, dict[str, Any]]:
        servers = {
            kafka.process_name(s): {
                "port": self._port("kafka", s),
                "bootstrap": self.region(s).kafka.bootstrap,
                **self._pid_info(kafka.process_name(s)),
            }
            for s in LAB_STACKS
        }
        target = self.mirror_stack()
        settings = self.region(target).settings
        source = settings.peer_stack
        mirror: dict[str, Any] = {"flow": f"{source} -> {target}", **self._pod_info(target, MIRROR_APP)}
        if all(servers[kafka.process_name(s)]["running"] for s in (source, target)):
            try:
                mirror["lag"] = mirrormaker_lag(
                    self.region(source).kafka.bootstrap,
                    self.region(target).kafka.bootstrap,
                    settings.kafka.mirrored_topics,
                    offset_lag_max=settings.kafka.mirror.offset_lag_max,
                )
            except KafkaException as exc:
                mirror["error"] = exc.args[0].str()
        servers["mirrormaker"] = mirror
        return servers

    def _pod_info(self, stack: str, app: str) -> dict[str, Any]:
        try:
            found = kube_workloads.pods(self.root, self.region(stack).namespace, app)
        except kube.KubeError as exc:
            return {"running": False, "error": str(exc)}
        if not found:
            return {"running": False}
        pod = found[0]
        restarts = sum(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses") or [])
        return {"running": kube_workloads.pod_ready(pod), "pod": pod["metadata"]["name"], "restarts": restarts}


def stack_outputs(
    settings: Settings,
    resources: aws.StackResources,
    endpoints: dict[str, StackEndpoints],
    layout: postgres.PgLayout,
) -> dict[str, Any]:
    """The stack outputs document (drtopo.outputs.StackOutputs) for one stack of the lab (pure)."""
    own, peer = endpoints[settings.stack], endpoints[settings.peer_stack]
    return outputs_document(
        settings,
        {
            "dbInstanceId": resources.db_instance_id,
            "dbArn": resources.db_arn,
            "dbAddress": process.LOOPBACK,
            "dbPort": own.db_port,
            "dbUser": postgres.SUPERUSER,
            "dbKmsKeyArn": resources.kms_key_arn,
            "kmsKeyArn": resources.kms_key_arn,
            **bucket_outputs(resources.buckets),
            "hostedZoneId": resources.hosted_zone_id,
            "healthCheckId": resources.health_check_id,
            **({"incidentTopicArn": resources.incident_topic_arn} if resources.incident_topic_arn else {}),
            "kafkaBootstrap": own.kafka_bootstrap,
            "peerKafkaBootstrap": peer.kafka_bootstrap,
            "serviceUrl": own.service_url,
            # The lab answers no DNS name: each stack's record URL is its own region's stand-in, as here.
            "regionServiceUrl": own.service_url,
            "selfManaged": {
                "binDir": str(postgres.BIN_DIR),
                "dataDir": str(layout.data_dir(settings.stack)),
                "archiveDir": str(layout.archive_dir),
                "baseBackupDir": str(layout.base_backup_dir),
                "osUser": postgres.OS_USER,
            },
        },
    )
