"""The application's Deployment in one region, through that region's own Kubernetes API (the stack's kubeconfig
context, never the ambient one): its replica count read, set by server-side apply under drtopo's field manager (the
same manager and field the program's DeploymentPatch owns, so the next `pulumi up` agrees), its rollout waited for
by kubectl's rule (drtopo/application/rollout.py), and the region's own health endpoint polled.

A region whose API does not answer is `Unreachable`; every wait has a deadline and reports its progress.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drtopo.application.rollout import RolloutStatus, rollout_status
from drtopo.backup.kube_export import kubectl, last_line
from drtopo.outputs import StackOutputs, region_service_url
from drtopo.settings import Settings

# drtopo's own field manager: the program's DeploymentPatch (components/application.py) applies under it too.
FIELD_MANAGER = "drtopo"
POLL_SECONDS = 0.5
# How often a long wait says where it is.
PROGRESS_EVERY_SECONDS = 5.0
HEALTH_TIMEOUT_SECONDS = 3.0
# One kubectl call's bound (promote's steps; the lease guard passes its own, shorter one).
KUBECTL_TIMEOUT_SECONDS = 20.0

Progress = Callable[[str], None]
# Server-side apply of a partial object under drtopo's field manager. `--validate=warn`: the server validates the
# merged object and warns of unknown fields; kubectl's "strict" falls back, where it does not detect the server's
# field validation, to a client-side schema check that refuses any partial object for lacking required fields
# (`kubectl apply --help`: strict "will fall back to less reliable client-side validation").
PARTIAL_APPLY = (
    "apply",
    "--server-side",
    f"--field-manager={FIELD_MANAGER}",
    "--force-conflicts",
    "--validate=warn",
    "-f",
    "-",
)


class Unreachable(RuntimeError):
    """The region's Kubernetes API gave no answer (partitioned, down) or refused the request."""


def application_namespace(settings: Settings) -> str:
    """The application's namespace: `application.namespace`, else the stack's `kubernetes.namespace` (pure)."""
    return settings.application.namespace or settings.kubernetes.namespace


@dataclass(frozen=True)
class RegionApp:
    """Where one region's application is: its cluster (kubeconfig context), namespace, Deployment, health URL."""

    stack: str
    context: str
    namespace: str
    deployment: str
    health_url: str

    @classmethod
    def of(cls, settings: Settings, outputs: StackOutputs | None = None) -> RegionApp:
        """From a stack's settings; the region's own endpoint from its outputs when they name one (pure)."""
        base = (outputs.region_service_url if outputs else None) or region_service_url(settings)
        return cls(
            stack=settings.stack,
            context=settings.kubernetes.context,
            namespace=application_namespace(settings),
            deployment=settings.application.deployment,
            health_url=base.rstrip("/") + settings.service.health_path,
        )

    @property
    def where(self) -> str:
        return f"{self.context}/{self.namespace}/deployment/{self.deployment}"


def replica_patch(app: RegionApp, replicas: int) -> dict[str, Any]:
    """The server-side-apply body: only spec.replicas of the Deployment (pure)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app.deployment, "namespace": app.namespace},
        "spec": {"replicas": replicas},
    }


def _kubectl(app: RegionApp, *args: str, stdin: str | None = None, timeout: float = KUBECTL_TIMEOUT_SECONDS) -> str:
    done = kubectl(app.context, *args, stdin=stdin, timeout=timeout)
    if done is None:
        raise Unreachable(f"{app.stack}'s Kubernetes API (context {app.context}) gave no answer, or no kubectl")
    if done.returncode != 0:
        raise Unreachable(f"kubectl {args[0]} on {app.where}: {last_line(done.stderr)}")
    return done.stdout


def read(app: RegionApp, timeout: float = KUBECTL_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The Deployment as the region's API returns it."""
    got = _kubectl(app, "get", "deployment", app.deployment, "-n", app.namespace, "-o", "json", timeout=timeout)
    return json.loads(got)


def replicas(app: RegionApp, timeout: float = KUBECTL_TIMEOUT_SECONDS) -> int:
    """The Deployment's spec.replicas now."""
    return int(read(app, timeout).get("spec", {}).get("replicas", 1))


def scale(app: RegionApp, count: int, timeout: float = KUBECTL_TIMEOUT_SECONDS) -> None:
    """spec.replicas = `count` by server-side apply under drtopo's field manager; `--force-conflicts` takes the
    field from whoever set it last (`kubectl scale`, the chart), as the program's patch does (patchForce)."""
    read(app, timeout)  # a missing Deployment is said as such, not as an apply that lacks its selector
    _kubectl(app, *PARTIAL_APPLY, stdin=json.dumps(replica_patch(app, count)), timeout=timeout)


def wait_rollout(app: RegionApp, timeout: float, progress: Progress) -> RolloutStatus:
    """Poll the Deployment until kubectl's rule says it rolled out; TimeoutError after `timeout` seconds with the
    last status; RolloutFailed when its progress deadline passed."""
    start = time.monotonic()
    said = start
    while True:
        status = rollout_status(read(app))
        if status.done:
            return status
        now = time.monotonic()
        if now - start > timeout:
            raise TimeoutError(f"{app.where} not rolled out within {timeout:g} s: {status.message}")
        if now - said >= PROGRESS_EVERY_SECONDS:
            progress(f"{app.stack}: {status.message} ({now - start:.0f} s)")
            said = now
        time.sleep(POLL_SECONDS)


def probe(url: str) -> tuple[bool, str]:
    """One GET of a health endpoint: (HTTP 200 with {"status": "UP"}, what it answered)."""
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_SECONDS) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        return False, f"GET {url} -> unreachable ({getattr(exc, 'reason', exc) or type(exc).__name__})"
    try:
        state = json.loads(body).get("status")
    except (ValueError, AttributeError):
        state = None
    return status == 200 and state == "UP", f"GET {url} -> {status} {state or body[:80].decode(errors='replace')}"


def wait_healthy(url: str, timeout: float, progress: Progress) -> tuple[bool, str]:
    """Poll the health endpoint until it answers UP or `timeout` seconds pass: (healthy, the last answer)."""
    start = time.monotonic()
    said = start
    while True:
        ok, detail = probe(url)
        now = time.monotonic()
        if ok or now - start > timeout:
            return ok, detail
        if now - said >= PROGRESS_EVERY_SECONDS:
            progress(f"waiting for {url} to answer UP ({now - start:.0f} s): {detail}")
            said = now
        time.sleep(POLL_SECONDS)
