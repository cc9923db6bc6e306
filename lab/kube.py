"""A single-node Kubernetes for the lab, all real: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
containerd with runc, and a kubelet, every one of them inside a network namespace the lab creates.

The kubelet refuses a loopback node IP, so the node lives in its own namespace joined to the host by a veth pair
with addresses that exist only there (host side `10.231.N.1/30`, node side `10.231.N.2/30`); the namespace has no
default route, so nothing in it can reach any other address. etcd and the controllers' ports are bound to the
namespace's loopback; kube-apiserver is bound to the node address, the one address host clients (`<root>/kubeconfig`)
and the kubelet both reach. Pods run on `hostNetwork` (the node's namespace) or on a bridge inside it.

Processes are entered with `nsenter --net=` (not `ip netns exec`, which remounts /sys and hides the cgroup mounts),
spawned and recorded by PID like every lab server (lab/process.py), logs under `<root>/logs`; the cluster's own files
under `<root>/kube/`. `stop` ends the pods' tasks, every process, unmounts what the kubelet and containerd mounted and
deletes the namespace and the veth, also after a failed `start`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from lab import kube_build, kube_store, process

NODE_NAME = "lab-node"
# Lab-made address blocks: /30 veth links and /24 pod bridges, one index per cluster on the machine.
LINK_BLOCK = ipaddress.ip_network("10.231.0.0/16")
POD_BLOCK = ipaddress.ip_network("10.232.0.0/16")
SERVICE_RANGE = "10.96.0.0/24"  # virtual only: no kube-proxy, so nothing routes to it
NETNS_DIR = Path("/var/run/netns")
CNI_BIN_DIR = Path("/usr/lib/cni")
STATE_FILE = "cluster.json"
# Start order; stop runs it backwards.
PROCESSES = ("etcd", "apiserver", "controller-manager", "scheduler", "containerd", "kubelet")
ADMIN, CONTROLLER_MANAGER, SCHEDULER, KUBELET = "admin", "controller-manager", "scheduler", "kubelet"
IDENTITIES = {
    ADMIN: ("lab-admin", "system:masters"),
    CONTROLLER_MANAGER: ("system:kube-controller-manager", ""),
    SCHEDULER: ("system:kube-scheduler", ""),
    KUBELET: (f"system:node:{NODE_NAME}", "system:nodes"),
}
READY_TIMEOUT_S = 120.0
# Images of these prefixes in the kept store that no archive asks for any more are removed at start.
IMAGE_PREFIXES = ("drtopo.lab/",)


class KubeError(RuntimeError):
    """The lab cluster could not be started or queried; the message names what failed."""


@dataclass(frozen=True)
class KubePorts:
    """The cluster's ports, all inside the node's namespace (so they never collide with the host's)."""

    apiserver: int = 6443
    etcd_client: int = 2379
    etcd_peer: int = 2380
    controller_manager: int = 10257
    scheduler: int = 10259
    kubelet: int = 10250
    kubelet_healthz: int = 10248


@dataclass(frozen=True)
class NodeNetwork:
    """The node's network namespace and the veth pair that joins it to the host (names fit IFNAMSIZ)."""

    index: int
    namespace: str
    host_veth: str
    node_veth: str
    host_ip: str
    node_ip: str
    pod_subnet: str

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.namespace


def cluster_id(root: Path) -> str:
    """A short stable id of the lab root, so two labs on one machine get distinct namespaces and links."""
    return hashlib.sha256(str(root.absolute()).encode()).hexdigest()[:8]


def link_network(index: int) -> ipaddress.IPv4Network:
    """The /30 of cluster `index` in LINK_BLOCK (pure)."""
    if not 0 <= index <= 255:
        raise KubeError(f"network index {index} is outside 0-255")
    return ipaddress.IPv4Network((int(LINK_BLOCK.network_address) + 4 * index, 30))


def free_index(used: Iterable[str], preferred: int = 0) -> int:
    """The first of the 256 lab links from `preferred` on (wrapping) none of whose addresses is in `used` (addresses
    the machine already has). Labs start from an index of their own, so two starting at once rarely race (pure)."""
    taken = {ipaddress.ip_address(a) for a in used}
    for offset in range(256):
        index = (preferred + offset) % 256
        link = link_network(index)
        if not any(a in link for a in taken):
            return index
    raise KubeError(f"every lab link of {LINK_BLOCK} (first 256 /30s) is in use")


def node_network(root: Path, index: int) -> NodeNetwork:
    """The namespace, veth names and addresses of cluster `index` for the lab at `root` (pure)."""
    link = link_network(index)
    pods = ipaddress.IPv4Network((int(POD_BLOCK.network_address) + 256 * index, 24))
    ident = cluster_id(root)
    return NodeNetwork(
        index=index,
        namespace=f"drtopo-{ident}",
        host_veth=f"dth{ident}",
        node_veth=f"dtn{ident}",
        host_ip=str(link[1]),
        node_ip=str(link[2]),
        pod_subnet=str(pods),
    )


@dataclass(frozen=True)
class Layout:
    """Where the cluster's files live under the lab root."""

    root: Path

    @property
    def base(self) -> Path:
        return self.root / "kube"

    @property
    def state(self) -> Path:
        return self.base / STATE_FILE

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def cert_dir(self) -> Path:
        return self.base / "apiserver"

    @property
    def ca_file(self) -> Path:
        # --cert-dir writes the self-signed serving certificate followed by the CA that signed it.
        return self.cert_dir / "apiserver.crt"

    @property
    def containerd_socket(self) -> Path:
        return self.base / "containerd" / "containerd.sock"

    @property
    def image_store(self) -> Path:
        """containerd's root, kept across starts (outside `base`) so a warm start imports no image again; `stop`
        leaves only images in it."""
        return self.root / "containerd-images"

    def component_kubeconfig(self, who: str) -> Path:
        return self.kubeconfig if who == ADMIN else self.base / "kubeconfigs" / f"{who}.yaml"


def process_name(component: str) -> str:
    return f"kube-{component}"


# ---- what gets written (pure) ---------------------------------------------------------------------------------------
def token_file(tokens: dict[str, str]) -> str:
    """kube-apiserver's --token-auth-file: `token,user,uid,"groups"` per identity of IDENTITIES."""
    lines = []
    for who, token in tokens.items():
        user, groups = IDENTITIES[who]
        lines.append(f'{token},{user},{user},"{groups}"' if groups else f"{token},{user},{user}")
    return "\n".join(lines) + "\n"


def kubeconfig(server: str, ca_file: Path, user: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "drtopo-lab", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "drtopo-lab", "context": {"cluster": "drtopo-lab", "user": user}}],
        "current-context": "drtopo-lab",
    }


def containerd_config(layout: Layout) -> str:
    """containerd's config: its own root, state and socket under the lab root; the CRI with the local pause image,
    cgroupfs, and restrict_oom_score_adj (these machines drop CAP_SYS_RESOURCE, so runc may not lower the score)."""
    base = layout.base / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f'root = "{layout.image_store}"',
            f'state = "{base / "state"}"',
            'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",'
            ' "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
            "[grpc]",
            f'  address = "{layout.containerd_socket}"',
            "[ttrpc]",
            f'  address = "{layout.containerd_socket}.ttrpc"',
            '[plugins."io.containerd.internal.v1.opt"]',
            f'  path = "{base / "opt"}"',
            f"[{cri}]",
            f'  sandbox_image = "{kube_build.PAUSE_IMAGE}"',
            "  restrict_oom_score_adj = true",
            f"[{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]",
            "  SystemdCgroup = false",
            f"[{cri}.cni]",
            f'  bin_dir = "{CNI_BIN_DIR}"',
            f'  conf_dir = "{layout.base / "cni"}"',
            # Where a pull finds its registry host's hosts.toml (lab/registry.py): read at each pull.
            f"[{cri}.registry]",
            f'  config_path = "{registry_hosts_dir(layout)}"',
            "",
        ]
    )


def registry_hosts_dir(layout: Layout) -> Path:
    """containerd's `config_path`: one folder per registry host, each with its hosts.toml (lab/registry.py)."""
    return layout.base / "containerd" / "certs.d"


def cni_config(layout: Layout, network: NodeNetwork) -> dict[str, Any]:
    """A bridge inside the node's namespace for pods off hostNetwork: their default route is the bridge (so they
    reach the node's address, where the lab's bridge forwards the lab's servers); no masquerading, and the
    namespace has no route out, so such a pod reaches the node and its peers only."""
    return {
        "cniVersion": "0.4.0",
        "name": "drtopo-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "drtopo0",
                "isGateway": True,
                "isDefaultGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.pod_subnet}]],
                    "dataDir": str(layout.base / "cni-ipam"),
                },
            }
        ],
    }


def kubelet_config(layout: Layout, network: NodeNetwork, ports: KubePorts) -> dict[str, Any]:
    """The kubelet on cgroup v1 with cgroupfs and no QoS hierarchy or allocatable enforcement; its API only on the
    node address, no read-only port; no DNS handed to pods (no resolv.conf of the machine's)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "address": network.node_ip,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "resolvConf": "",
        "podLogsDir": str(layout.base / "pod-logs"),
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "registerNode": True,
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
    }


def commands(layout: Layout, network: NodeNetwork, ports: KubePorts, bins: Path) -> dict[str, list[str]]:
    """The argv of every component (Kubernetes binaries from `bins`), before `nsenter --net=` (pure)."""
    base = layout.base
    etcd_client = f"http://127.0.0.1:{ports.etcd_client}"
    etcd_peer = f"http://127.0.0.1:{ports.etcd_peer}"

    def controller(name: str, port: int) -> list[str]:
        return [
            f"--kubeconfig={layout.component_kubeconfig(name)}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={base / name}",
            "--leader-elect=false",
        ]

    return {
        "etcd": [
            "etcd",
            "--name=lab",
            f"--data-dir={base / 'etcd'}",
            f"--listen-client-urls={etcd_client}",
            f"--advertise-client-urls={etcd_client}",
            f"--listen-peer-urls={etcd_peer}",
            f"--initial-advertise-peer-urls={etcd_peer}",
            f"--initial-cluster=lab={etcd_peer}",
        ],
        "apiserver": [
            str(bins / "kube-apiserver"),
            f"--etcd-servers={etcd_client}",
            f"--bind-address={network.node_ip}",
            f"--advertise-address={network.node_ip}",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={layout.cert_dir}",
            f"--token-auth-file={base / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={base / 'sa.pub'}",
            f"--service-account-signing-key-file={base / 'sa.key'}",
            # `kubectl logs` would otherwise resolve the node's name through the machine's DNS server.
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
        ],
        "controller-manager": [
            str(bins / "kube-controller-manager"),
            *controller(CONTROLLER_MANAGER, ports.controller_manager),
            f"--service-account-private-key-file={base / 'sa.key'}",
            # Each controller acts as its own service account, with the bootstrap role made for it.
            "--use-service-account-credentials=true",
            f"--root-ca-file={layout.ca_file}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
        ],
        "scheduler": [
            str(bins / "kube-scheduler"),
            *controller(SCHEDULER, ports.scheduler),
        ],
        "containerd": ["containerd", f"--config={base / 'containerd.toml'}"],
        "kubelet": [
            str(bins / "kubelet"),
            f"--config={base / 'kubelet.yaml'}",
            f"--kubeconfig={layout.component_kubeconfig(KUBELET)}",
            f"--root-dir={base / 'kubelet'}",
            f"--cert-dir={base / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={network.node_ip}",
        ],
    }


def in_namespace(network: NodeNetwork, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--net={network.netns_path}", "--", *argv]


def server_url(network: NodeNetwork, ports: KubePorts) -> str:
    return f"https://{network.node_ip}:{ports.apiserver}"


# ---- the edges ----------------------------------------------------------------------------------------------------
def _run(argv: Sequence[str], what: str, timeout: float = 30) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise KubeError(f"{what} took over {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise KubeError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc.stdout


def _machine_addresses() -> list[str]:
    rows = json.loads(_run(["ip", "-j", "-4", "addr", "show"], "ip addr show"))
    return [info["local"] for row in rows for info in row.get("addr_info", [])]


def _create_network(network: NodeNetwork) -> None:
    steps = [
        ["ip", "netns", "add", network.namespace],
        ["ip", "link", "add", network.host_veth, "type", "veth", "peer", "name", network.node_veth],
        ["ip", "link", "set", network.node_veth, "netns", network.namespace],
        ["ip", "addr", "add", f"{network.host_ip}/30", "dev", network.host_veth],
        ["ip", "link", "set", network.host_veth, "up"],
        ["ip", "-n", network.namespace, "addr", "add", f"{network.node_ip}/30", "dev", network.node_veth],
        ["ip", "-n", network.namespace, "link", "set", network.node_veth, "up"],
        ["ip", "-n", network.namespace, "link", "set", "lo", "up"],
    ]
    for argv in steps:
        _run(argv, " ".join(argv))


def _delete_network(network: NodeNetwork) -> None:
    # Deleting the namespace destroys the node's end of the veth, and with it the host's end.
    for argv in (["ip", "netns", "delete", network.namespace], ["ip", "link", "delete", network.host_veth]):
        subprocess.run(argv, capture_output=True, timeout=30, check=False)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(mode)


def _write_files(layout: Layout, network: NodeNetwork, ports: KubePorts) -> None:
    base = layout.base
    tokens = {who: secrets.token_urlsafe(32) for who in IDENTITIES}
    _write(base / "tokens.csv", token_file(tokens), 0o600)
    server = server_url(network, ports)
    for who, token in tokens.items():
        document = kubeconfig(server, layout.ca_file, IDENTITIES[who][0], token)
        _write(layout.component_kubeconfig(who), yaml.safe_dump(document, sort_keys=False), 0o600)
    _run(["openssl", "genrsa", "-out", str(base / "sa.key"), "2048"], "openssl genrsa (service account key)")
    _run(["openssl", "rsa", "-in", str(base / "sa.key"), "-pubout", "-out", str(base / "sa.pub")], "openssl rsa")
    _write(base / "containerd.toml", containerd_config(layout))
    _write(base / "cni" / "10-drtopo-lab.conflist", json.dumps(cni_config(layout, network), indent=2))
    _write(base / "kubelet.yaml", yaml.safe_dump(kubelet_config(layout, network, ports), sort_keys=False))


def _admin_token(layout: Layout) -> str:
    document = yaml.safe_load(layout.kubeconfig.read_text())
    return document["users"][0]["user"]["token"]


def _wait_ready(layout: Layout, network: NodeNetwork, ports: KubePorts, pid: int, timeout: float) -> float:
    """Wait until kube-apiserver answers /readyz with 200 (its certificate checked against --cert-dir's CA)."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        if not process.alive(pid):
            raise KubeError(f"kube-apiserver exited before it was ready: {last}; see {layout.root / 'logs'}")
        if layout.ca_file.is_file():
            request = urllib.request.Request(
                f"{server_url(network, ports)}/readyz", headers={"Authorization": f"Bearer {_admin_token(layout)}"}
            )
            try:
                context = ssl.create_default_context(cafile=str(layout.ca_file))
                with urllib.request.urlopen(request, timeout=2, context=context) as answer:
                    if answer.status == 200:
                        return time.monotonic() - start
            except (OSError, ssl.SSLError) as exc:
                last = str(exc)
        time.sleep(0.2)
    raise KubeError(f"kube-apiserver was not ready within {timeout:.0f} s: {last}")


def _wait_path(path: Path, pid: int, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if not process.alive(pid):
            raise KubeError(f"{what} exited before creating {path}")
        time.sleep(0.1)
    raise KubeError(f"{what} did not create {path} within {timeout:.0f} s")


def kubectl(
    root: Path, *args: str, stdin: str | None = None, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the lab's kubectl against the cluster at `root` (its kubeconfig), bounded in time; `stdin` feeds `-f -`."""
    argv = [str(kube_build.binary("kubectl")), f"--kubeconfig={Layout(root).kubeconfig}", "--request-timeout=20s"]
    try:
        proc = subprocess.run([*argv, *args], input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise KubeError(f"kubectl {' '.join(args)} took over {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        raise KubeError(f"kubectl {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc


def node_ready(node: dict[str, Any]) -> bool:
    """A Node object's Ready condition is True (pure)."""
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_accepts_pods(node: dict[str, Any]) -> bool:
    """Ready, and the node lifecycle controller has lifted its not-ready taint, so pods get scheduled (pure)."""
    taints = node.get("spec", {}).get("taints", [])
    return node_ready(node) and not any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints)


def _wait_node_ready(root: Path, pid: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not process.alive(pid):
            raise KubeError(f"the kubelet exited before its node was Ready; see {root / 'logs'}")
        proc = kubectl(root, "get", "node", NODE_NAME, "-o", "json", check=False)
        if proc.returncode == 0 and node_accepts_pods(json.loads(proc.stdout)):
            return time.monotonic() - start
        time.sleep(0.5)
    raise KubeError(f"node {NODE_NAME} was not Ready within {timeout:.0f} s; see {root / 'logs'}")


def _spawn(root: Path, network: NodeNetwork, component: str, argv: Sequence[str]) -> int:
    return process.spawn(root, process_name(component), in_namespace(network, argv))


def _ctr(layout: Layout, network: NodeNetwork, *args: str, timeout: float = 60) -> str:
    argv = ["ctr", "--address", str(layout.containerd_socket), "-n", "k8s.io", *args]
    return _run(in_namespace(network, argv), f"ctr {' '.join(args[:2])}", timeout=timeout)


def archive_ref(archive: Path) -> str | None:
    """The image reference a docker archive holds (its manifest's first RepoTag), or None when unreadable."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else []
    except (OSError, tarfile.TarError, ValueError, KeyError):
        return None
    tags = manifest[0].get("RepoTags") or [] if manifest else []
    return str(tags[0]) if tags else None


def _import_images(layout: Layout, network: NodeNetwork, archives: Sequence[Path]) -> None:
    """Import each archive whose image the store does not hold yet; remove the store's other lab images."""
    held = set(_ctr(layout, network, "images", "ls", "-q").split())
    wanted = {archive: archive_ref(archive) for archive in archives}
    for archive, ref in wanted.items():
        if ref is None or ref not in held:
            _ctr(layout, network, "images", "import", str(archive), timeout=600)
    keep = {ref for ref in wanted.values() if ref} | {kube_build.PAUSE_IMAGE}
    for ref in held - keep:
        if ref.startswith(IMAGE_PREFIXES):
            with contextlib.suppress(KubeError):
                _ctr(layout, network, "images", "rm", ref)


def _load_state(layout: Layout) -> tuple[NodeNetwork, KubePorts] | None:
    try:
        state = json.loads(layout.state.read_text())
    except FileNotFoundError:
        return None
    return NodeNetwork(**state["network"]), KubePorts(**state["ports"])


def cluster_network(root: Path) -> NodeNetwork:
    """The node network of the cluster at `root` (from its state file)."""
    loaded = _load_state(Layout(root.absolute()))
    if loaded is None:
        raise KubeError(f"no lab cluster at {root}; start one with lab.kube.start")
    return loaded[0]


def choose_network(root: Path) -> NodeNetwork:
    """The node network a cluster started now at `root` gets (a free lab link), so servers can be told the node's
    address before the cluster starts; pass it to `start`."""
    root = root.absolute()
    return node_network(root, free_index(_machine_addresses(), int(cluster_id(root), 16) % 256))


def start(
    root: Path,
    ports: KubePorts | None = None,
    network: NodeNetwork | None = None,
    images: Sequence[Path] = (),
) -> dict[str, float]:
    """Start the cluster at `root` from scratch (a running one is stopped first) on `network` (default: a free
    one), with the image archives `images` imported next to the pause image; returns seconds per phase.

    On any failure everything started so far is stopped and the namespace deleted before the error is raised.
    """
    root = root.absolute()
    ports = ports or KubePorts()
    layout = Layout(root)
    missing = [
        tool for tool in ("etcd", "containerd", "runc", "ctr", "nsenter", "ip", "openssl") if not shutil.which(tool)
    ]
    if missing:
        raise KubeError(f"missing {', '.join(missing)} on PATH; run `make system`")
    stop(root)
    shutil.rmtree(layout.base, ignore_errors=True)
    network = network or choose_network(root)
    kube_build.binary("kubelet")  # fails fast, asking for `make kube`, when the build has not run
    argv = commands(layout, network, ports, kube_build.bin_dir())
    layout.base.mkdir(parents=True, exist_ok=True)
    layout.state.write_text(json.dumps({"network": asdict(network), "ports": asdict(ports)}, indent=2) + "\n")
    if images:  # a new store starts as a copy of set-up's template, holding every image unpacked already
        kube_store.seed(layout.image_store, [kube_build.pause_archive(), *images])
    timings: dict[str, float] = {}
    try:
        phase = time.monotonic()
        _create_network(network)
        _write_files(layout, network, ports)
        timings["network and files"] = time.monotonic() - phase
        phase = time.monotonic()
        etcd = _spawn(root, network, "etcd", argv["etcd"])
        containerd = _spawn(root, network, "containerd", argv["containerd"])
        apiserver = _spawn(root, network, "apiserver", argv["apiserver"])
        _wait_ready(layout, network, ports, apiserver, 60)
        if not process.alive(etcd):
            raise KubeError(f"etcd exited; see {root / 'logs'}")
        timings["etcd and kube-apiserver"] = time.monotonic() - phase
        phase = time.monotonic()
        _spawn(root, network, "controller-manager", argv["controller-manager"])
        _spawn(root, network, "scheduler", argv["scheduler"])
        _wait_path(layout.containerd_socket, containerd, "containerd", 30)
        _import_images(layout, network, [kube_build.pause_archive()])
        kubelet = _spawn(root, network, "kubelet", argv["kubelet"])
        # The images load while the node registers (both mostly wait on disk and on the apiserver).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kube-images") as pool:
            loaded = pool.submit(_import_images, layout, network, [kube_build.pause_archive(), *images])
            _wait_node_ready(root, kubelet, READY_TIMEOUT_S)
            timings["node Ready"] = time.monotonic() - phase
            loaded.result()
        timings["images imported"] = time.monotonic() - phase
    except BaseException:
        stop(root)
        raise
    return timings


def sandbox_netns_paths(container_info: dict[str, Any]) -> list[str]:
    """The network namespace files CNI made for a pod sandbox, from `ctr containers info` JSON (pure): only
    paths under /var/run/netns (a hostNetwork pod has none; the node's own namespace is the lab's, never listed)."""
    spec = container_info.get("Spec") or {}
    namespaces = (spec.get("linux") or {}).get("namespaces") or []
    paths = [str(n.get("path", "")) for n in namespaces if n.get("type") == "network"]
    return [path for path in paths if Path(path).parent == NETNS_DIR and Path(path).name.startswith("cni-")]


def _end_tasks(layout: Layout, network: NodeNetwork) -> list[str]:
    """Kill and delete every container task, so each shim removes its runc state and cgroup and exits (a task left
    behind would outlive containerd); then every container with its snapshot, so the kept image store holds only
    images. Returns the pod sandboxes' network namespace files (the CRI removes them only on a sandbox teardown the
    kubelet never gets to do here; `stop` removes them once every process is gone)."""
    netns: list[str] = []
    with contextlib.suppress(KubeError):
        for task in _ctr(layout, network, "tasks", "ls", "-q", timeout=20).split():
            with contextlib.suppress(KubeError):
                _ctr(layout, network, "tasks", "delete", "--force", task, timeout=30)
    with contextlib.suppress(KubeError):
        containers = _ctr(layout, network, "containers", "ls", "-q", timeout=20).split()
        for container in containers:
            with contextlib.suppress(KubeError, ValueError):
                netns += sandbox_netns_paths(json.loads(_ctr(layout, network, "containers", "info", container)))
        if containers:
            _ctr(layout, network, "containers", "delete", *containers, timeout=120)
    return sorted(set(netns))


def _remove_netns_files(paths: Iterable[str]) -> None:
    for path in paths:
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=30, check=False)
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()


def _pids_in_namespace(network: NodeNetwork) -> list[int]:
    try:
        target = os.stat(network.netns_path).st_ino
    except FileNotFoundError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(entry / "ns" / "net").st_ino == target:
                    pids.append(int(entry.name))
    return pids


def mounts_under(mountinfo: str, base: Path) -> list[str]:
    """Mount points at or below `base` in a /proc/self/mountinfo text, deepest first (pure)."""
    prefix = str(base).rstrip("/")
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def _unmount_all(base: Path) -> None:
    for point in mounts_under(Path("/proc/self/mountinfo").read_text(), base):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30, check=False)


def stop(root: Path) -> list[str]:
    """Stop the cluster at `root`: pods' tasks, every component (kubelet first), leftover processes in the node's
    namespace, the mounts under `<root>/kube`, then the namespace and veth. Returns the processes stopped."""
    root = root.absolute()
    layout = Layout(root)
    loaded = _load_state(layout)
    stopped = [process_name(c) for c in PROCESSES if process.running(root, process_name(c))]
    process.stop(root, process_name("kubelet"), 20)
    pod_netns: list[str] = []
    if loaded is not None:
        network, _ = loaded
        if process.running(root, process_name("containerd")):
            pod_netns = _end_tasks(layout, network)
    for component in reversed(PROCESSES[:-1]):
        process.stop(root, process_name(component), 20)
    if loaded is not None:
        network, _ = loaded
        for pid in _pids_in_namespace(network):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
                stopped.append(f"pid {pid} in {network.namespace}")
        _unmount_all(layout.base)
        _unmount_all(layout.image_store)
        _remove_netns_files(pod_netns)
        _delete_network(network)
        layout.state.unlink()
    return stopped


def is_up(root: Path) -> bool:
    return Layout(root).state.is_file() and all(process.running(root, process_name(c)) for c in PROCESSES)


def status(root: Path) -> dict[str, Any]:
    """The node's readiness and the pods per namespace (phase, restarts), or why they could not be read."""
    root = root.absolute()
    info: dict[str, Any] = {
        name: {"pid": process.read_pid(root, name), "running": process.running(root, name)}
        for name in map(process_name, PROCESSES)
    }
    loaded = _load_state(Layout(root))
    if loaded is None:
        return {"up": False, "processes": info}
    network, ports = loaded
    result: dict[str, Any] = {"up": is_up(root), "server": server_url(network, ports), "processes": info}
    try:
        node = json.loads(kubectl(root, "get", "node", NODE_NAME, "-o", "json").stdout)
        pods = json.loads(kubectl(root, "get", "pods", "-A", "-o", "json").stdout)["items"]
    except KubeError as exc:
        return {**result, "error": str(exc)}
    result["node"] = {"name": NODE_NAME, "ready": node_ready(node), "ip": network.node_ip}
    result["pods"] = pod_summary(pods)
    return result


def pod_summary(pods: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{namespace: {pod: {phase, restarts}}} from a pod list's items (pure)."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for pod in pods:
        meta, pod_status = pod["metadata"], pod.get("status", {})
        restarts = sum(c.get("restartCount", 0) for c in pod_status.get("containerStatuses", []))
        summary.setdefault(meta["namespace"], {})[meta["name"]] = {
            "phase": pod_status.get("phase", "Unknown"),
            "restarts": restarts,
        }
    return summary


def task_pid(listing: str, task: str) -> int:
    """The PID of `task` in `ctr tasks ls` output (columns TASK PID STATUS) (pure)."""
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == task:
            return int(fields[1])
    raise KubeError(f"containerd runs no task {task!r}")


def container_pid(root: Path, container_id: str) -> int:
    """The host PID of a container's process, from the id a pod's status gives (`containerd://<id>`)."""
    network, layout = cluster_network(root), Layout(root.absolute())
    argv = ["ctr", "--address", str(layout.containerd_socket), "-n", "k8s.io", "tasks", "ls"]
    listing = _run(in_namespace(network, argv), "ctr tasks ls", timeout=20)
    return task_pid(listing, container_id.removeprefix("containerd://"))
