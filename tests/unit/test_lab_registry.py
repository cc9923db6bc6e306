"""The lab's per-region registries (lab/registry.py): their configuration, containerd's host mapping to a region's
gate, and how a pull is recognised in a registry's access log (pure). The registries themselves, the push, ECR's
replication and a pull by the node's containerd run on the lab: the fault matrix's row "prod's registry down"."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from lab import gates, kube, registry

ROOT = Path("/tmp/drtopo-lab-test/lab")


def test_a_registry_serves_plain_http_on_loopback_from_its_own_storage() -> None:
    config = yaml.safe_load(registry.config_text(ROOT / "registry" / "dr", 25001))
    assert config["http"] == {"addr": "127.0.0.1:25001"}
    assert config["storage"]["filesystem"] == {"rootdirectory": f"{ROOT}/registry/dr"}
    assert config["storage"]["delete"] == {"enabled": True}
    assert "accesslog" not in config["log"]  # on by default: the row reads containerd's requests there


def test_containerd_sends_every_pull_of_a_host_to_its_regions_gate_and_nowhere_else() -> None:
    hosts = tomllib.loads(registry.hosts_toml("http://10.200.0.2:24001"))
    # `server` replaces the host (the real ECR name is never tried); plain HTTP by the URL's scheme.
    assert hosts["server"] == "http://10.200.0.2:24001"
    assert hosts["host"] == {"http://10.200.0.2:24001": {"capabilities": ["pull", "resolve"]}}


def test_containerd_reads_its_registry_hosts_from_the_lab_root() -> None:
    layout = kube.Layout(ROOT)
    cri = tomllib.loads(kube.containerd_config(layout))["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"] == {"config_path": str(kube.registry_hosts_dir(layout))}
    assert kube.registry_hosts_dir(layout).is_relative_to(layout.base)


def test_each_region_has_a_registry_gate() -> None:
    assert "registry" in gates.KINDS
    assert gates.split_name(gates.proxy_name("dr", "registry")) == ("dr", "registry")


DR_HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
LOG = "\n".join(
    [
        '127.0.0.1 - - [03/Dec/2026:06:09:24 +0000] "PUT /v2/drtopo/backup/manifests/1.0.0-pg15 HTTP/1.1" 201 0 ""'
        ' "skopeo/1.9.3"',
        '127.0.0.1 - - [03/Dec/2026:06:09:25 +0000] "GET /v2/drtopo/backup/manifests/1.0.0-pg15 HTTP/1.1" 200 1405 ""'
        ' "skopeo/1.9.3"',
        '127.0.0.1 - - [03/Dec/2026:06:10:01 +0000] "HEAD /v2/drtopo/kafka/manifests/3.9.1?ns=' + DR_HOST + ' HTTP/1.1"'
        ' 200 1405 "" "containerd/1.6.20~ds1"',
        '127.0.0.1 - - [03/Dec/2026:06:10:01 +0000] "GET /v2/drtopo/kafka/manifests/sha256:b9f6?ns='
        + DR_HOST
        + ' HTTP/1.1"'
        ' 200 1405 "" "containerd/1.6.20~ds1"',
    ]
)


def test_a_pull_is_containerd_resolving_the_manifest_by_its_tag_for_the_host_the_image_named() -> None:
    assert registry.pulled_by_containerd(LOG, "drtopo/kafka", "3.9.1", DR_HOST)
    # skopeo's own push and inspect are not a pull; another tag, repository or host is not this one.
    assert not registry.pulled_by_containerd(LOG, "drtopo/backup", "1.0.0-pg15", DR_HOST)
    assert not registry.pulled_by_containerd(LOG, "drtopo/kafka", "3.9", DR_HOST)
    assert not registry.pulled_by_containerd(LOG, "drtopo/kafk", "3.9.1", DR_HOST)
    assert not registry.pulled_by_containerd(LOG, "drtopo/kafka", "3.9.1", DR_HOST.replace("us-west-2", "us-east-1"))


def test_references_name_the_registry_on_loopback() -> None:
    assert (
        registry.reference(25001, "drtopo/backup", "1.0.0-pg15") == "docker://127.0.0.1:25001/drtopo/backup:1.0.0-pg15"
    )
