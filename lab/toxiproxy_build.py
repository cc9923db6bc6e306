"""The lab's Toxiproxy server (the regions' gates, lab/gates.py), built once from its Go module into the cache.

`python -m lab.toxiproxy_build` (the Makefile's `toxiproxy` target) runs `go install
github.com/Shopify/toxiproxy/v2/cmd/server@VERSION` into `.cache/toxiproxy/<version>/` (git-ignored; about 30 s on 2
cores the first time), sharing the Go module and build caches of the Kubernetes build (`.cache/go/`). The binary is
installed into a staging folder and renamed into place, so a warm run is a quick no-op and an interrupted build is
never mistaken for a good one.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from lab.jars import cache_root
from lab.kube_build import KubeBuildError, _run, go_command, go_env

MODULE = "github.com/Shopify/toxiproxy/v2"
VERSION = "v2.5.0"
BINARY = "toxiproxy-server"
BUILD_TIMEOUT_S = 15 * 60


def bin_dir(version: str = VERSION) -> Path:
    return cache_root() / "toxiproxy" / version


def is_built(version: str = VERSION) -> bool:
    return (bin_dir(version) / BINARY).is_file()


def binary() -> Path:
    """The built server; the build belongs to set-up (`make toxiproxy`), never to starting a lab."""
    if not is_built():
        raise KubeBuildError(f"Toxiproxy {VERSION} is not built in {bin_dir()}; run `make toxiproxy`")
    return bin_dir() / BINARY


def ensure_binary(version: str = VERSION) -> Path:
    """The server's path, building it when missing (`go install` outside any module: the version is pinned here)."""
    target = bin_dir(version)
    if is_built(version):
        return target / BINARY
    staging = target.with_name(f"{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = {**go_env(), "GOBIN": str(staging), "GOFLAGS": "-mod=mod -buildvcs=false -trimpath"}
    argv = [go_command(), "install", "-ldflags", "-s -w", f"{MODULE}/cmd/server@{version}"]
    _run(argv, f"go install of {MODULE}/cmd/server@{version}", BUILD_TIMEOUT_S, cwd=staging, env=env)
    built = staging / "server"
    if not built.is_file():
        raise KubeBuildError(f"go install of Toxiproxy {version} left no server binary in {staging}")
    built.rename(staging / BINARY)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target / BINARY


def main() -> int:
    start = time.monotonic()
    warm = is_built()
    try:
        path = ensure_binary()
    except KubeBuildError as exc:
        print(f"toxiproxy: {exc}", file=sys.stderr)
        return 2
    state = "cached" if warm else "built"
    print(f"toxiproxy: Toxiproxy {VERSION} {state}: {path} ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
