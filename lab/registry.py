"""Each region's container registry in the lab: Debian's docker-registry (distribution 2.8), ECR's stand-in.

The stacks name their own region's ECR for drtopo's images (drtopo/images.py): `<account>.dkr.ecr.<region>.
amazonaws.com/drtopo/<name>:<tag>`. In the lab each region has a registry of its own on loopback, reached through that
region's gate (lab/gates.py kind `registry`), and the lab's containerd resolves each region's ECR host name to that
gate (a `hosts.toml` per host under containerd's `config_path`, plain HTTP): a pod that names dr's registry pulls
from dr's, and from nowhere else (the `server` of a hosts.toml replaces the host, so containerd never tries the real
one).

`publish` pushes a lab image (its docker archive, as `make images` built it) to the primary's registry and copies it
to the peer's through the primary's gate, as ECR's cross-Region replication does after a push (the rule filters on the
`drtopo/` prefix, drtopo/images.py). The registries start on first use: the lab's pods run the images imported into
the node at `up` (pull policy Never), so only what asks for a pull (the fault matrix's registry row) needs them.

Registries are started with `skopeo` pushes in mind: plain HTTP on loopback, no authentication, deletes allowed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from lab import process

BINARY = "docker-registry"
PUSH_TIMEOUT_S = 300.0


class RegistryError(RuntimeError):
    """A registry did not start, or an image did not reach it; the message names the command and its answer."""


def process_name(stack: str) -> str:
    return f"registry-{stack}"


def storage_dir(root: Path, stack: str) -> Path:
    return root / "registry" / stack


def config_text(storage: Path, port: int) -> str:
    """docker-registry's configuration: filesystem storage under `storage`, HTTP on loopback `port` (pure). The
    access log stays on: a pull shows there as its manifest's GET."""
    return "\n".join(
        [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: text",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {process.LOOPBACK}:{port}",
            "",
        ]
    )


def hosts_toml(server: str) -> str:
    """containerd's `hosts.toml` for one registry host: every pull and resolve goes to `server` (an http:// URL,
    plain HTTP) instead of the host itself (pure)."""
    return "\n".join(
        [
            f'server = "{server}"',
            "",
            f'[host."{server}"]',
            '  capabilities = ["pull", "resolve"]',
            "",
        ]
    )


def start(root: Path, stack: str, port: int, timeout: float = 30.0) -> int:
    """The stack's registry on `port` (its storage kept under the lab root across restarts); returns its PID."""
    if shutil.which(BINARY) is None:
        raise RegistryError(f"{BINARY} is not installed; run `make setup` (Debian package docker-registry)")
    storage = storage_dir(root, stack)
    storage.mkdir(parents=True, exist_ok=True)
    config = root / "registry" / f"{stack}.yml"
    config.write_text(config_text(storage, port))
    pid = process.spawn(root, process_name(stack), [BINARY, "serve", str(config)])
    process.wait_port(port, timeout, process_name(stack), pid)
    return pid


def _skopeo(*args: str, timeout: float = PUSH_TIMEOUT_S) -> str:
    if shutil.which("skopeo") is None:
        raise RegistryError("skopeo is not installed; run `make setup` (Debian package skopeo)")
    argv = ["skopeo", "--insecure-policy", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RegistryError(f"skopeo {args[0]} took over {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise RegistryError(f"skopeo {args[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc.stdout


def reference(port: int, repository: str, tag: str) -> str:
    """A `docker://` reference to `repository:tag` at the registry on loopback `port` (pure)."""
    return f"docker://{process.LOOPBACK}:{port}/{repository}:{tag}"


def push(archive: Path, port: int, repository: str, tag: str) -> float:
    """The docker archive `archive` as `repository:tag` in the registry at `port`; returns the seconds it took
    (blobs already there are not sent again)."""
    start_time = time.monotonic()
    _skopeo("copy", "--quiet", "--dest-tls-verify=false", f"docker-archive:{archive}", reference(port, repository, tag))
    return time.monotonic() - start_time


def replicate(source_port: int, target_port: int, repository: str, tag: str) -> float:
    """`repository:tag` copied from one registry to another, digests as they are (ECR's replication); returns the
    seconds it took."""
    start_time = time.monotonic()
    _skopeo(
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--preserve-digests",
        reference(source_port, repository, tag),
        reference(target_port, repository, tag),
    )
    return time.monotonic() - start_time


def manifest_digest(port: int, repository: str, tag: str) -> str:
    """The manifest digest of `repository:tag` at the registry on `port` (`skopeo inspect`)."""
    ref = reference(port, repository, tag)
    return _skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}", ref, timeout=60).strip()


def pulled_by_containerd(log_text: str, repository: str, tag: str, host: str) -> bool:
    """Whether a registry's access log shows containerd resolving `repository:tag` as an image of `host` (a pull's
    first request: a HEAD or GET of the manifest by its tag, containerd's user agent; containerd names the host the
    image reference said in the `ns` query parameter) (pure)."""
    request = f"/v2/{repository}/manifests/{tag}?ns={host} "
    return any(
        request in line and ('"GET ' in line or '"HEAD ' in line) and '"containerd/' in line
        for line in log_text.splitlines()
    )
