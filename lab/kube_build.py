"""The lab's Kubernetes binaries, built once from the Kubernetes Go module into the git-ignored cache.

`python -m lab.kube_build` (the Makefile's `kube` target) builds kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet and kubectl from `lab/kube/build/go.mod` (which requires `k8s.io/kubernetes` at one pinned
version and replaces every staging module with its published version) into `.cache/kubernetes/<version>/`. The Go
module and build caches live under `.cache/go/`. A complete build is marked by a `.complete` file, so a warm run is a
quick no-op and an interrupted build is never mistaken for a good one. The version reaches the binaries through
`-ldflags -X` (without it they say v0.0.0-master, which kubectl refuses to parse).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lab.jars import cache_root

BUILD_MODULE = Path(__file__).resolve().parent / "kube" / "build"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")
COMPLETE = ".complete"
BUILD_TIMEOUT_S = 45 * 60
# Where the machine's Go lives when it is not on PATH.
GO_FALLBACK = Path("/usr/local/go/bin/go")
# The sandbox image the lab's containerd runs every pod in (CRI sandbox_image); local, never pulled.
PAUSE_IMAGE = "drtopo.lab/pause:1.0"
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


class KubeBuildError(RuntimeError):
    """The binaries could not be built; the message says what failed."""


def pinned_version(go_mod: str) -> str:
    """The k8s.io/kubernetes version a go.mod requires, e.g. "v1.34.4"."""
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+)\s*(?://.*)?$", go_mod, re.MULTILINE)
    if match is None:
        raise KubeBuildError("go.mod requires no k8s.io/kubernetes vX.Y.Z")
    return match.group(1)


def kubernetes_version() -> str:
    return pinned_version((BUILD_MODULE / "go.mod").read_text())


def version_ldflags(version: str) -> str:
    """The -ldflags that stamp `version` (vMAJOR.MINOR.PATCH) into every binary, as Kubernetes' own build does."""
    match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+", version)
    if match is None:
        raise KubeBuildError(f"not a Kubernetes release version: {version!r}")
    major, minor = match.groups()
    values = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    flags = [f"-X {package}.{key}={value}" for package in VERSION_PACKAGES for key, value in values.items()]
    return " ".join(["-s", "-w", *flags])


def bin_dir(version: str | None = None) -> Path:
    return cache_root() / "kubernetes" / (version or kubernetes_version())


def is_built(version: str | None = None) -> bool:
    return (bin_dir(version) / COMPLETE).is_file()


def binary(name: str) -> Path:
    """The path of one built binary; the build belongs to set-up (`make kube`), never to starting a lab."""
    if name not in BINARIES:
        raise KubeBuildError(f"not a lab Kubernetes binary: {name!r} (one of {', '.join(BINARIES)})")
    if not is_built() or not pause_archive().is_file():
        raise KubeBuildError(f"Kubernetes {kubernetes_version()} is not built in {bin_dir()}; run `make kube`")
    return bin_dir() / name


def go_command() -> str:
    found = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.is_file() else None)
    if found is None:
        raise KubeBuildError(f"no Go toolchain: neither 'go' on PATH nor {GO_FALLBACK}")
    return found


def go_env() -> dict[str, str]:
    cache = cache_root() / "go"
    return {
        **os.environ,
        "GOMODCACHE": str(cache / "mod"),
        "GOCACHE": str(cache / "build"),
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-buildvcs=false -trimpath -mod=readonly",
        "CGO_ENABLED": "0",
    }


def _run(argv: list[str], what: str, timeout: float, **kwargs: object) -> None:
    """Run one build step; a failure or a timeout is a KubeBuildError naming the step and the output's last lines."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired as exc:
        raise KubeBuildError(f"{what} took over {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise KubeBuildError(f"{what} failed (exit {proc.returncode}): {tail}")


def _go_build(output: Path, packages: list[str], version: str, timeout: float) -> None:
    argv = [go_command(), "build", "-o", f"{output}/", "-ldflags", version_ldflags(version), *packages]
    _run(argv, f"go build of {' '.join(packages)}", timeout, cwd=BUILD_MODULE, env=go_env())


def ensure_binaries() -> Path:
    """Return the folder holding the five binaries and the pause image archive, building what is missing."""
    version = kubernetes_version()
    target = bin_dir(version)
    if not is_built(version):
        staging = target.with_name(f"{version}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _go_build(staging, [f"k8s.io/kubernetes/cmd/{name}" for name in BINARIES], version, BUILD_TIMEOUT_S)
        missing = [name for name in BINARIES if not (staging / name).is_file()]
        if missing:
            raise KubeBuildError(f"go build of Kubernetes {version} left out {missing}")
        (staging / COMPLETE).write_text(f"kubernetes {version}\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    ensure_pause_image(target, version)
    return target


def pause_archive(version: str | None = None) -> Path:
    return bin_dir(version) / "pause-image.tar"


def buildah_command(*args: str, store: str = "buildah", driver: str = "vfs") -> list[str]:
    """buildah with its storage in `store` under the cache, not the machine's (vfs by default: no overlay mount
    needed for the one-layer pause image)."""
    buildah = shutil.which("buildah")
    if buildah is None:
        raise KubeBuildError("buildah is not on PATH; install Debian's 'buildah' (make system)")
    root = cache_root() / store
    return [buildah, "--root", str(root / "storage"), "--runroot", str(root / "run"), "--storage-driver", driver, *args]


def ensure_pause_image(folder: Path, version: str) -> Path:
    """The pod sandbox image (lab/kube/build/pause) built with buildah from scratch, as a docker archive that
    `ctr images import` loads; built once next to the binaries."""
    archive = folder / pause_archive(version).name
    if archive.is_file():
        return archive
    work = folder / "pause.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    _go_build(work, ["./pause"], version, 600)
    container = f"drtopo-pause-{os.getpid()}"
    _run(buildah_command("from", "--name", container, "scratch"), "buildah from scratch", 120)
    try:
        _run(buildah_command("copy", container, str(work / "pause"), "/pause"), "buildah copy", 120)
        _run(buildah_command("config", "--entrypoint", '["/pause"]', container), "buildah config", 120)
        _run(buildah_command("commit", container, PAUSE_IMAGE), "buildah commit", 300)
    finally:
        subprocess.run(buildah_command("rm", container), capture_output=True, timeout=120, check=False)
    partial = work / archive.name
    _run(buildah_command("push", PAUSE_IMAGE, f"docker-archive:{partial}:{PAUSE_IMAGE}"), "buildah push", 300)
    partial.rename(archive)
    shutil.rmtree(work)
    return archive


def main() -> int:
    start = time.monotonic()
    warm = is_built()
    try:
        folder = ensure_binaries()
    except KubeBuildError as exc:
        print(f"kube: {exc}", file=sys.stderr)
        return 2
    state = "cached" if warm else "built"
    print(
        f"kube: Kubernetes {kubernetes_version()} {state}: {', '.join(BINARIES)} in {folder} "
        f"({time.monotonic() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
