"""The namespace's Kubernetes objects as a rebuild needs them: the Namespace itself and every namespaced kind the API
serves and the namespace uses, discovered (`kubectl api-resources --namespaced --verbs=list`), minus what the
cluster makes again by itself, with the fields the server owns removed; and applied back in dependency order.

A kind that cannot be read fails the export, with its reason; one the cluster does not serve (any more) is skipped,
with its reason; never is a kind silently left out. Secrets are never read: their inventory is the program's
declaration (`drtopo:secrets`), their values come back from the secret store (drtopo/backup/secrets.py).
kubectl talks to the stack's own cluster (`--context` of settings.kubernetes.context), except inside a pod of that
cluster (the export CronJob), where the pod's own service account is the only identity it has.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drtopo.report import FAIL, PASS, SKIP

log = logging.getLogger(__name__)

# Metadata the API server sets and a fresh cluster refuses or ignores; `status` goes too.
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink")
# Annotations the server or a controller writes: a PersistentVolumeClaim's binding (and with it spec.volumeName,
# which names a volume of the old cluster), a Deployment's revision, kubectl's last applied copy.
SERVER_ANNOTATION_PREFIXES = (
    "pv.kubernetes.io/",
    "volume.kubernetes.io/",
    "volume.beta.kubernetes.io/",
    "deployment.kubernetes.io/",
    "kubectl.kubernetes.io/last-applied-configuration",
)
# Kinds never exported, by resource name as `kubectl api-resources -o name` prints it, and why: the cluster or a
# controller makes them again, they record what happened rather than what is wanted, or (Secrets) their values
# never leave the secret store.
NOT_EXPORTED: Mapping[str, str] = {
    "events": "a record of what happened, not configuration",
    "events.events.k8s.io": "a record of what happened, not configuration",
    "endpoints": "the endpoints controller derives them from Services",
    "endpointslices.discovery.k8s.io": "the endpoint slice controller derives them from Services",
    "replicasets.apps": "a Deployment's controller makes them",
    "controllerrevisions.apps": "StatefulSet and DaemonSet controllers write them",
    "leases.coordination.k8s.io": "held and renewed by running components",
    "csistoragecapacities.storage.k8s.io": "published by the CSI driver",
    "secrets": "values never leave the secret store; the inventory is drtopo:secrets",
}
# API groups of measurements, not objects (metrics-server's pods and nodes).
NOT_EXPORTED_GROUPS = ("metrics.k8s.io",)
# Objects the cluster creates in every namespace.
CLUSTER_MADE = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
# Restore order: what others refer to first (the Namespace, accounts and their rights, configuration, claims), then
# workloads, then what routes to or scales them. Kinds not named here go last, in name order.
APPLY_ORDER = (
    "namespace",
    "serviceaccounts",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "limitranges",
    "resourcequotas",
    "configmaps",
    "persistentvolumeclaims",
    "deployments.apps",
    "statefulsets.apps",
    "daemonsets.apps",
    "cronjobs.batch",
    "jobs.batch",
    "pods",
    "services",
    "ingresses.networking.k8s.io",
    "horizontalpodautoscalers.autoscaling",
    "poddisruptionbudgets.policy",
    "networkpolicies.networking.k8s.io",
)
NAMESPACE_FILE = "namespace"
# kubectl's words for a kind the server does not serve.
_NOT_SERVED = ("doesn't have a resource type", "the server could not find the requested resource")
_GROUP_VERSION = re.compile(r"([a-z0-9][-a-z0-9.]*\.[a-z]+)/v[0-9][a-z0-9]*:")
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class KindResult:
    """What became of one kind: exported (with its object count), skipped or failed, and why."""

    resource: str
    outcome: str
    detail: str
    objects: int = 0


@dataclass(frozen=True)
class Export:
    """The exported files (name -> YAML) and what became of each kind."""

    files: dict[str, bytes] = field(default_factory=dict)
    kinds: tuple[KindResult, ...] = ()
    reachable: bool = True
    why_not: str = ""

    @property
    def outcome(self) -> str:
        if not self.reachable:
            return SKIP
        return FAIL if any(k.outcome == FAIL for k in self.kinds) else PASS

    def summary(self, namespace: str) -> str:
        """One line for the report: counts, and every kind skipped or failed with its reason."""
        if not self.reachable:
            return f"not exported: no reachable cluster ({self.why_not})"
        done = [k for k in self.kinds if k.outcome == PASS and k.objects]
        line = f"exported {sum(k.objects for k in done)} objects of {len(done)} kinds from namespace {namespace}"
        if done:
            line += f" ({', '.join(k.resource for k in done)})"
        for outcome, word in ((FAIL, "cannot read"), (SKIP, "skipped")):
            listed = [f"{k.resource} ({k.detail})" for k in self.kinds if k.outcome == outcome]
            if listed:
                line += f"; {word}: {'; '.join(listed)}"
        return line


def in_cluster(env: Mapping[str, str], token: Path = SERVICE_ACCOUNT_TOKEN) -> bool:
    """Running in a pod with its service account's token and no kubeconfig of its own: kubectl's in-cluster
    identity is the only one, and the cluster is the pod's own."""
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and "KUBECONFIG" not in env and token.is_file()


def context_args(context: str | None, env: Mapping[str, str] | None = None) -> list[str]:
    """`--request-timeout` and `--context <the stack's>`; none of them in-cluster (pure but for the token file).

    In-cluster, any such flag makes kubectl take its built-in default (localhost:8080) over the pod's in-cluster
    configuration, so the export CronJob never reached its cluster; there the subprocess timeout bounds the call."""
    if in_cluster(os.environ if env is None else env):
        return []
    return ["--request-timeout=10s", *([f"--context={context}"] if context else [])]


def kubectl(
    context: str | None, *args: str, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str] | None:
    """kubectl against the stack's cluster; None when there is no kubectl or no answer in time. `stdin` feeds
    `-f -` (Secret values go this way, never in argv)."""
    binary = shutil.which("kubectl")
    if binary is None:
        return None
    argv = [binary, *context_args(context), *args]
    log.debug("kubectl %s", " ".join(argv[1:]))
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        log.debug("kubectl %s: no answer in %.0f s", " ".join(args), timeout)
        return None
    log.debug("kubectl exit %s: %s", done.returncode, done.stderr.strip()[-2000:])
    return done


def last_line(text: str, default: str = "no message") -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else default


def not_exported(resource: str) -> str | None:
    """Why `resource` is never exported, or None (pure)."""
    if resource in NOT_EXPORTED:
        return NOT_EXPORTED[resource]
    group = resource.partition(".")[2]
    if group in NOT_EXPORTED_GROUPS:
        return "measurements, not objects"
    return None


def read_failure(resource: str, returncode: int | None, stderr: str) -> KindResult:
    """A `kubectl get` that did not answer 0: skipped when the server does not serve the kind, else failed (pure)."""
    if returncode is None:
        return KindResult(resource, FAIL, "no answer from the cluster in time")
    why = last_line(stderr)
    if any(words in stderr for words in _NOT_SERVED):
        return KindResult(resource, SKIP, f"not served by the cluster: {why}")
    return KindResult(resource, FAIL, why)


def made_by_cluster(item: dict[str, Any]) -> bool:
    """A controller owns it (a Deployment's pods, a CronJob's Jobs) or the cluster creates it in every namespace:
    restoring it would make a second copy or fight its maker (pure)."""
    metadata = item.get("metadata", {})
    if any(ref.get("controller") for ref in metadata.get("ownerReferences") or []):
        return True
    return (item.get("kind"), metadata.get("name")) in CLUSTER_MADE


def strip(item: dict[str, Any]) -> dict[str, Any]:
    """One object without what the server owns: its metadata fields, status, server-written annotations, a claim's
    bound volume and a Service's allocated cluster address (pure)."""
    metadata = {k: v for k, v in item.get("metadata", {}).items() if k not in SERVER_FIELDS}
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if not k.startswith(SERVER_ANNOTATION_PREFIXES)
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    out = {**{k: v for k, v in item.items() if k != "status"}, "metadata": metadata}
    spec = item.get("spec") or {}
    if item.get("kind") == "PersistentVolumeClaim":
        out["spec"] = {k: v for k, v in spec.items() if k != "volumeName"}
    elif item.get("kind") == "Service" and spec.get("clusterIP") not in (None, "None"):
        # Allocated from the old cluster's service range; a headless Service keeps its "None".
        out["spec"] = {k: v for k, v in spec.items() if k not in ("clusterIP", "clusterIPs")}
    return out


def without_server_fields(listing: dict[str, Any]) -> dict[str, Any]:
    """A `kubectl get -o json` list, each item stripped, without the objects the cluster makes itself (pure)."""
    return {
        "apiVersion": listing.get("apiVersion", "v1"),
        "kind": listing.get("kind", "List"),
        "items": [strip(item) for item in listing.get("items", []) if not made_by_cluster(item)],
    }


def file_name(namespace: str, resource: str) -> str:
    return f"kubernetes/{namespace}/{resource}.yaml"


def apply_rank(name: str) -> tuple[int, str]:
    """Where a manifest `kubernetes/<ns>/<resource>.yaml` goes in the restore order (pure)."""
    resource = Path(name).name.removesuffix(".yaml")
    rank = APPLY_ORDER.index(resource) if resource in APPLY_ORDER else len(APPLY_ORDER)
    return rank, resource


def unavailable_groups(stderr: str) -> list[str]:
    """The API groups discovery could not read, from kubectl's message (pure): "unable to retrieve the complete list
    of server APIs: metrics.k8s.io/v1beta1: the server is currently unable to handle the request"."""
    return sorted({m.group(1) for m in _GROUP_VERSION.finditer(stderr)})


def served_kinds(context: str | None) -> tuple[list[str], KindResult | None]:
    """The namespaced kinds the API serves with `list`, and a failed result when discovery was incomplete for a group
    that may hold objects (an aggregated API not answering: what it serves cannot be read)."""
    proc = kubectl(context, "api-resources", "--namespaced=true", "--verbs=list", "-o", "name")
    if proc is None:
        return [], KindResult("api-resources", FAIL, "no answer from the cluster in time")
    names = sorted({line.strip() for line in proc.stdout.splitlines() if line.strip()})
    if proc.returncode != 0:
        groups = unavailable_groups(proc.stderr)
        if not groups or any(g not in NOT_EXPORTED_GROUPS for g in groups):
            return names, KindResult("api-resources", FAIL, f"discovery incomplete: {last_line(proc.stderr)}")
    return names, None


def not_reached(why: str, inside: bool) -> Export:
    """No answer from the cluster: a skip from outside it (a laptop, a drill without Kubernetes), a failure from a
    pod inside it (the export CronJob exists to read this very cluster) (pure)."""
    if inside:
        return Export(kinds=(KindResult(NAMESPACE_FILE, FAIL, f"the pod's own cluster did not answer: {why}"),))
    return Export(reachable=False, why_not=why)


def export(namespace: str, context: str | None) -> Export:
    """Read the Namespace and every kind it uses; nothing is written anywhere (the caller uploads the files)."""
    probe = kubectl(context, "get", "namespace", namespace, "-o", "json")
    if probe is None:
        why = "no kubectl on PATH" if shutil.which("kubectl") is None else "no answer in time"
        return not_reached(why, in_cluster(os.environ))
    if probe.returncode != 0:
        stderr = probe.stderr
        if "NotFound" in stderr or "Forbidden" in stderr or "forbidden" in stderr:
            # The cluster answered: a namespace that is gone or may not be read is a failure, not an absent cluster.
            return Export(kinds=(KindResult(NAMESPACE_FILE, FAIL, last_line(stderr)),))
        return not_reached(last_line(stderr, "unreachable"), in_cluster(os.environ))
    listed = {"apiVersion": "v1", "kind": "List", "items": [strip(json.loads(probe.stdout))]}
    files = {file_name(namespace, NAMESPACE_FILE): _yaml(listed)}
    results = [KindResult(NAMESPACE_FILE, PASS, "exported", 1)]
    resources, discovery = served_kinds(context)
    if discovery is not None:
        results.append(discovery)
    for resource in resources:
        if not_exported(resource) is not None:
            continue
        proc = kubectl(context, "get", resource, "-n", namespace, "-o", "json")
        if proc is None:
            results.append(read_failure(resource, None, ""))
            continue
        if proc.returncode != 0:
            results.append(read_failure(resource, proc.returncode, proc.stderr))
            continue
        listing = without_server_fields(json.loads(proc.stdout))
        results.append(KindResult(resource, PASS, "exported", len(listing["items"])))
        if listing["items"]:
            files[file_name(namespace, resource)] = _yaml(listing)
    return Export(files=files, kinds=tuple(results))


def _yaml(document: dict[str, Any]) -> bytes:
    return yaml.safe_dump(document, sort_keys=False).encode()


def apply(
    folder: Path, names: Iterable[str], context: str | None, before_workloads: Callable[[], bool] | None = None
) -> tuple[str, str]:
    """(outcome, detail): `kubectl apply` of the restored manifests in dependency order, when a cluster answers.

    `before_workloads` runs once the Namespace, accounts, roles and configuration are in and before any claim or
    workload (where the Secrets go, from the secret store); it returns False to stop there.
    """
    manifests = sorted((n for n in names if n.startswith("kubernetes/") and n.endswith(".yaml")), key=apply_rank)
    if not manifests:
        return SKIP, "none in this backup"
    probe = kubectl(context, "version", "-o", "json")
    if probe is None or probe.returncode != 0:
        return SKIP, f"{len(manifests)} manifests written, not applied: no reachable cluster"
    # An older backup wrote kinds the namespace had none of as empty lists, which kubectl refuses to apply.
    manifests = [n for n in manifests if (yaml.safe_load((folder / n).read_text()) or {}).get("items")]
    pending = before_workloads
    for name in manifests:
        if pending is not None and apply_rank(name)[0] > APPLY_ORDER.index("configmaps"):
            if not pending():
                return FAIL, f"stopped before {apply_rank(name)[1]}: the Secrets could not be written"
            pending = None
        proc = kubectl(context, "apply", "-f", str(folder / name), timeout=60)
        if proc is None or proc.returncode != 0:
            return FAIL, f"kubectl apply -f {folder / name} failed: {last_line(proc.stderr) if proc else 'timeout'}"
    if pending is not None and not pending():
        return FAIL, "the Secrets could not be written"
    return PASS, f"applied {len(manifests)} manifests in order: {', '.join(apply_rank(n)[1] for n in manifests)}"
