"""The lab's Kubernetes build module and its version stamping (lab/kube_build.py, lab/kube/build/go.mod)."""

from __future__ import annotations

import re

import pytest

from lab.kube_build import BUILD_MODULE, KubeBuildError, kubernetes_version, pinned_version, version_ldflags


def test_go_mod_pins_kubernetes_and_replaces_every_staging_module_with_its_published_version() -> None:
    version = kubernetes_version()
    assert re.fullmatch(r"v1\.34\.\d+", version)
    staging = "v0" + version.removeprefix("v1")
    go_mod = (BUILD_MODULE / "go.mod").read_text()
    replaced = dict(re.findall(r"^\s*(k8s\.io/[\w-]+) => \1 (v\S+)$", go_mod, re.MULTILINE))
    assert {"k8s.io/api", "k8s.io/apiserver", "k8s.io/client-go", "k8s.io/kubectl", "k8s.io/kubelet"} <= set(replaced)
    assert set(replaced.values()) == {staging}
    assert not re.search(r"=> \./", go_mod), "a staging module still points at a folder"


def test_pinned_version_reads_the_require_line_direct_or_indirect() -> None:
    assert pinned_version("require k8s.io/kubernetes v1.34.4\n") == "v1.34.4"
    assert pinned_version("require (\n\tk8s.io/kubernetes v1.34.2 // indirect\n)\n") == "v1.34.2"
    with pytest.raises(KubeBuildError, match=r"requires no k8s\.io/kubernetes"):
        pinned_version("require k8s.io/kubelet v0.34.4\n")


def test_ldflags_stamp_the_release_into_both_version_packages() -> None:
    flags = version_ldflags("v1.34.4")
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.34.4" in flags
        assert f"-X {package}.gitMajor=1" in flags
        assert f"-X {package}.gitMinor=34" in flags


def test_ldflags_refuse_a_version_that_is_not_a_release() -> None:
    with pytest.raises(KubeBuildError, match=r"not a Kubernetes release version: 'v0.0.0-master'"):
        version_ldflags("v0.0.0-master")
