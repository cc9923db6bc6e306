"""The lab cluster's pure parts (lab/kube.py): its network, the configuration it writes, and what it reads back."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from lab import kube

ROOT = Path("/tmp/some-lab")


def network(index: int = 3) -> kube.NodeNetwork:
    return kube.node_network(ROOT, index)


def test_node_network_is_one_lab_made_link_and_pod_range_per_index() -> None:
    net = network(3)
    assert (net.host_ip, net.node_ip, net.pod_subnet) == ("10.231.0.13", "10.231.0.14", "10.232.3.0/24")
    assert ipaddress.ip_interface(f"{net.host_ip}/30").network == ipaddress.ip_interface(f"{net.node_ip}/30").network
    # Interface names must fit the kernel's 15 characters; two lab roots never share a namespace.
    assert max(len(net.host_veth), len(net.node_veth)) <= 15
    assert kube.node_network(Path("/tmp/other-lab"), 3).namespace != net.namespace
    with pytest.raises(kube.KubeError, match="network index 256 is outside 0-255"):
        kube.node_network(ROOT, 256)


def test_free_index_skips_links_already_on_the_machine() -> None:
    assert kube.free_index(["127.0.0.1", "192.0.2.2"]) == 0
    assert kube.free_index(["10.231.0.1", "10.231.0.6"]) == 2
    assert kube.free_index(["10.231.3.253"], preferred=255) == 0
    assert kube.free_index([], preferred=7) == 7
    with pytest.raises(kube.KubeError, match="in use"):
        kube.free_index(str(kube.node_network(ROOT, i).host_ip) for i in range(256))


def test_token_file_gives_each_component_its_identity() -> None:
    text = kube.token_file({kube.ADMIN: "t1", kube.KUBELET: "t2", kube.SCHEDULER: "t3"})
    assert text.splitlines() == [
        't1,lab-admin,lab-admin,"system:masters"',
        f't2,system:node:{kube.NODE_NAME},system:node:{kube.NODE_NAME},"system:nodes"',
        "t3,system:kube-scheduler,system:kube-scheduler",
    ]


def test_containerd_lives_under_the_lab_root_and_restricts_oom_score_adj() -> None:
    layout = kube.Layout(ROOT)
    config = tomllib.loads(kube.containerd_config(layout))
    # Its image store is kept across starts (a warm start imports nothing); its state goes with the cluster.
    assert config["root"] == f"{ROOT}/containerd-images" and config["state"].startswith(f"{ROOT}/kube/")
    assert config["grpc"]["address"] == str(layout.containerd_socket)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == "drtopo.lab/pause:1.0"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False


def test_kubelet_runs_cgroupfs_on_cgroup_v1_on_the_node_address_only() -> None:
    config = kube.kubelet_config(kube.Layout(ROOT), network(), kube.KubePorts())
    assert config["cgroupDriver"] == "cgroupfs" and config["failCgroupV1"] is False
    assert config["cgroupsPerQOS"] is False and config["enforceNodeAllocatable"] == []
    assert config["address"] == network().node_ip and config["readOnlyPort"] == 0
    assert config["resolvConf"] == ""


def test_components_bind_to_loopback_or_the_node_address() -> None:
    net = network()
    argv = kube.commands(kube.Layout(ROOT), net, kube.KubePorts(), Path("/bins"))
    assert "--listen-client-urls=http://127.0.0.1:2379" in argv["etcd"]
    assert f"--bind-address={net.node_ip}" in argv["apiserver"]
    assert f"--advertise-address={net.node_ip}" in argv["apiserver"]
    assert "--kubelet-preferred-address-types=InternalIP" in argv["apiserver"]
    for component in ("controller-manager", "scheduler"):
        assert "--bind-address=127.0.0.1" in argv[component]
    assert f"--node-ip={net.node_ip}" in argv["kubelet"]
    assert argv["kubelet"][0] == "/bins/kubelet"
    assert kube.in_namespace(net, ["x"]) == ["nsenter", f"--net=/var/run/netns/{net.namespace}", "--", "x"]


def test_mounts_under_the_root_deepest_first() -> None:
    mountinfo = "\n".join(
        [
            "22 1 0:21 / / rw - ext4 /dev/vda rw",
            "30 22 0:40 / /tmp/some-lab/kube/kubelet rw - tmpfs tmpfs rw",
            "31 30 0:41 / /tmp/some-lab/kube/kubelet/pods/a\\040b rw - tmpfs tmpfs rw",
            "32 22 0:42 / /tmp/some-lab-other/x rw - tmpfs tmpfs rw",
        ]
    )
    assert kube.mounts_under(mountinfo, ROOT) == ["/tmp/some-lab/kube/kubelet/pods/a b", "/tmp/some-lab/kube/kubelet"]


def test_node_accepts_pods_once_ready_and_untainted() -> None:
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    tainted = {**ready, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}
    assert kube.node_accepts_pods(ready)
    assert kube.node_ready(tainted) and not kube.node_accepts_pods(tainted)
    assert not kube.node_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})


def test_task_pid_and_pod_summary() -> None:
    listing = "TASK    PID     STATUS\nabc     42      RUNNING\ndef     43      RUNNING\n"
    assert kube.task_pid(listing, "def") == 43
    with pytest.raises(kube.KubeError, match="no task 'xyz'"):
        kube.task_pid(listing, "xyz")
    pods = [
        {
            "metadata": {"namespace": "ns", "name": "p"},
            "status": {"phase": "Running", "containerStatuses": [{"restartCount": 1}, {"restartCount": 2}]},
        }
    ]
    assert kube.pod_summary(pods) == {"ns": {"p": {"phase": "Running", "restarts": 3}}}


def test_pods_off_host_network_route_to_the_node_only() -> None:
    network = kube.node_network(ROOT, 3)
    bridge = kube.cni_config(kube.Layout(ROOT), network)["plugins"][0]
    assert bridge["isDefaultGateway"] is True and bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": network.pod_subnet}]]


def test_sandbox_netns_paths_are_only_the_cri_made_files() -> None:
    info = {
        "Spec": {
            "linux": {
                "namespaces": [
                    {"type": "pid"},
                    {"type": "network", "path": "/var/run/netns/cni-0311204e-24ad"},
                    {"type": "ipc", "path": "/var/run/netns/cni-ipc-not-network"},
                ]
            }
        }
    }
    assert kube.sandbox_netns_paths(info) == ["/var/run/netns/cni-0311204e-24ad"]
    # A hostNetwork pod joins the node's namespace: nothing of it is the CRI's to remove.
    host = {"Spec": {"linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/drtopo-lab-3"}]}}}
    assert kube.sandbox_netns_paths(host) == []
    assert kube.sandbox_netns_paths({}) == []
