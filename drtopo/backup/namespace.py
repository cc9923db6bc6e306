"""Rebuild a lost namespace from the newest configuration backup: `restore namespace`.

The runbook's recovery-time test deletes the whole namespace and recovers it. This waits until a namespace being
deleted is gone (nothing can be created in a Terminating namespace), applies the backup's export of it in dependency
order (the Namespace, accounts, roles, configuration, then the declared Secrets from the secret store, then claims,
workloads, Services, Ingresses, autoscalers, disruption budgets: drtopo/backup/kube_export.py APPLY_ORDER), and waits
for every Deployment, StatefulSet and DaemonSet to roll out, within one deadline. Each phase is timed in the report.
The stack files are not touched (`restore config` brings those back); a namespace that is there and Active is
refused unless forced: re-applying a backup over a live namespace could undo newer changes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from drtopo.backup import config as config_backup
from drtopo.backup import kube_export, secrets
from drtopo.backup.store import s3_client
from drtopo.outputs import StackOutputs
from drtopo.report import FAIL, PASS, BadInput, Clock, Report, Unsafe
from drtopo.settings import Settings

# Workload kinds whose rollout is waited for, by the manifest's resource name.
WORKLOADS = {
    "deployments.apps": "deployment",
    "statefulsets.apps": "statefulset",
    "daemonsets.apps": "daemonset",
}
ABSENT, TERMINATING, ACTIVE = "absent", "terminating", "active"
POLL_SECONDS = 1.0
PROGRESS_SECONDS = 10.0


@dataclass(frozen=True)
class Workload:
    kind: str  # kubectl's word: deployment, statefulset, daemonset
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def namespace_files(files: Iterable[str], namespace: str) -> list[str]:
    """The backup's manifests of `namespace`, in apply order (pure)."""
    return sorted(
        (n for n in files if n.startswith(f"kubernetes/{namespace}/") and n.endswith(".yaml")),
        key=kube_export.apply_rank,
    )


def state_of(answer: dict[str, Any] | None) -> str:
    """absent, terminating or active, from `kubectl get namespace -o json` (None: not found) (pure)."""
    if answer is None:
        return ABSENT
    deleting = answer.get("metadata", {}).get("deletionTimestamp") or answer.get("status", {}).get("phase") == (
        "Terminating"
    )
    return TERMINATING if deleting else ACTIVE


def workloads_in(name: str, document: dict[str, Any] | None) -> list[Workload]:
    """The workloads a manifest `kubernetes/<ns>/<resource>.yaml` holds (pure)."""
    kind = WORKLOADS.get(Path(name).name.removesuffix(".yaml"))
    if kind is None or not document:
        return []
    return [Workload(kind, item["metadata"]["name"]) for item in document.get("items") or []]


def rolled_out(kind: str, answer: dict[str, Any]) -> tuple[bool, str]:
    """Whether a workload's rollout is complete, and where it stands (pure): the controller has seen the newest
    spec and every wanted replica is updated and available (ready, for the kinds without availability)."""
    status, spec = answer.get("status") or {}, answer.get("spec") or {}
    seen = status.get("observedGeneration", 0) >= answer.get("metadata", {}).get("generation", 1)
    if kind == "daemonset":
        wanted = status.get("desiredNumberScheduled", 0)
        updated, ready = status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0)
    else:
        wanted = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        ready = status.get("availableReplicas" if kind == "deployment" else "readyReplicas", 0)
    done = seen and updated >= wanted and ready >= wanted
    return done, f"{ready}/{wanted} ready, {updated} updated" + ("" if seen else ", spec not yet observed")


def _namespace(context: str | None, namespace: str) -> dict[str, Any] | str | None:
    """The Namespace object, None when not found, or kubectl's error line."""
    proc = kube_export.kubectl(context, "get", "namespace", namespace, "-o", "json")
    if proc is None:
        return "no answer from the cluster in time"
    if proc.returncode != 0:
        return None if "NotFound" in proc.stderr else kube_export.last_line(proc.stderr)
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def wait_gone(context: str | None, namespace: str, deadline: float, clock: Clock) -> tuple[bool, str]:
    """Poll until the namespace being deleted is gone, until `deadline` (monotonic)."""
    start = last_said = time.monotonic()
    while True:
        answer = _namespace(context, namespace)
        if answer is None:
            return True, f"namespace {namespace} gone after {time.monotonic() - start:.1f} s"
        if time.monotonic() > deadline:
            return False, f"namespace {namespace} still terminating after {time.monotonic() - start:.0f} s"
        if time.monotonic() - last_said >= PROGRESS_SECONDS:
            clock.say(f"namespace {namespace} still terminating ({time.monotonic() - start:.0f} s)")
            last_said = time.monotonic()
        time.sleep(POLL_SECONDS)


def wait_rollouts(
    context: str | None, namespace: str, workloads: list[Workload], deadline: float, clock: Clock
) -> dict[str, tuple[bool, str]]:
    """Poll every workload until it has rolled out or `deadline` (monotonic) passes; where each ended."""
    where: dict[str, tuple[bool, str]] = {str(w): (False, "not read yet") for w in workloads}
    last_said = time.monotonic()
    while True:
        for w in workloads:
            if where[str(w)][0]:
                continue
            proc = kube_export.kubectl(context, "get", w.kind, w.name, "-n", namespace, "-o", "json")
            if proc is None or proc.returncode != 0:
                where[str(w)] = (False, "no answer" if proc is None else kube_export.last_line(proc.stderr))
                continue
            where[str(w)] = rolled_out(w.kind, json.loads(proc.stdout))
        pending = [name for name, (done, _) in where.items() if not done]
        if not pending or time.monotonic() > deadline:
            return where
        if time.monotonic() - last_said >= PROGRESS_SECONDS:
            waiting = "; ".join(f"{name}: {where[name][1]}" for name in pending)
            clock.say(f"rollouts: {len(workloads) - len(pending)}/{len(workloads)} done ({waiting})")
            last_said = time.monotonic()
        time.sleep(POLL_SECONDS)


def _download(s3: Any, bucket: str, prefix: str, names: list[str], sums: dict[str, Any], folder: Path) -> None:
    for name in names:
        body = s3.get_object(Bucket=bucket, Key=prefix + name)["Body"].read()
        if hashlib.sha256(body).hexdigest() != sums[name]["sha256"]:
            raise Unsafe(f"{prefix}{name} does not match the manifest's SHA-256; nothing was applied")
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def restore(
    settings: Settings,
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    dry_run: bool,
    prefix: str | None,
    wait_seconds: float,
    force: bool,
) -> list[str]:
    """Rebuild the stack's namespace from a configuration backup (the newest by default) and wait for its rollouts;
    a dry run reads the backup and the namespace's state and returns what it would do, changing nothing."""
    namespace, context = outputs.namespace, settings.kubernetes.context
    deadline = time.monotonic() + wait_seconds
    phases: dict[str, float] = {}
    report.measured.update(namespace=namespace, phase_seconds=phases)
    s3 = s3_client(outputs)
    prefix = prefix or config_backup.latest_prefix(s3, outputs.config_bucket, settings.stack)
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    report.measured.update(prefix=prefix)
    try:
        raw = s3.get_object(Bucket=outputs.config_bucket, Key=prefix + config_backup.MANIFEST)["Body"].read()
    except ClientError:
        raise BadInput(f"{prefix} in bucket {outputs.config_bucket} has no {config_backup.MANIFEST}") from None
    manifest = json.loads(raw)
    names = namespace_files(manifest["files"], namespace)
    if kube_export.file_name(namespace, kube_export.NAMESPACE_FILE) not in names:
        report.check(
            "backup holds the namespace",
            False,
            f"{prefix} holds no export of namespace {namespace} (its Kubernetes export was skipped); "
            "take one with `backup config` against the stack's cluster",
        )
        return []
    answer = _namespace(context, namespace)
    if isinstance(answer, str):
        report.check("cluster answers", False, f"kubectl get namespace {namespace}: {answer}")
        return []
    state = state_of(answer)
    report.measured.update(namespace_found=state)
    if state == ACTIVE and not force:
        raise Unsafe(
            f"namespace {namespace} exists and is Active; `restore namespace` rebuilds a lost one (re-applying a "
            "backup over a live namespace can undo newer changes): pass --force to do it anyway"
        )
    with tempfile.TemporaryDirectory(prefix="drtopo-namespace-") as scratch:
        folder = Path(scratch)
        with clock.step(f"download {len(names)} manifests of namespace {namespace} from {prefix}") as step:
            _download(s3, outputs.config_bucket, prefix, names, manifest["files"], folder)
        phases["download"] = step["seconds"]
        documents = {n: yaml.safe_load((folder / n).read_text()) or {} for n in names}
        workloads = [w for n in names for w in workloads_in(n, documents[n])]
        if dry_run:
            declared = sorted({s.kubernetes_secret for s in settings.secrets})
            return [
                f"namespace {namespace} is {state}" + (": would wait until it is gone" if state == TERMINATING else ""),
                *(
                    f"would apply {Path(n).stem} ({len(documents[n].get('items') or [])} objects)"
                    for n in names
                    if documents[n].get("items")
                ),
                f"would write Secrets {', '.join(declared) or '(none declared)'} from Secrets Manager in "
                f"{outputs.region} before the claims and workloads",
                f"would wait for the rollout of {', '.join(map(str, workloads)) or 'no workload'}",
            ]
        if state == TERMINATING:
            with clock.step(f"wait for namespace {namespace} to finish terminating") as step:
                gone, detail = wait_gone(context, namespace, deadline, clock)
            phases["terminating"] = step["seconds"]
            report.check("lost namespace gone", gone, detail)
            if not gone:
                return []
        secret_seconds: list[float] = []

        def write_secrets() -> bool:
            start, before = time.monotonic(), report.count(FAIL)
            secrets.restore(settings, outputs, report, dry_run=False)
            secret_seconds.append(time.monotonic() - start)
            return report.count(FAIL) == before

        with clock.step(f"apply the namespace's objects in order ({len(names)} kinds; Secrets from the store)") as step:
            outcome, applied = kube_export.apply(folder, names, context, write_secrets)
        phases["apply"] = step["seconds"]
        if secret_seconds:
            phases["secrets"] = round(secret_seconds[0], 3)
    report.record("objects applied", outcome, applied)
    if outcome != PASS:
        return []
    with clock.step(f"wait for {len(workloads)} rollouts") as step:
        where = wait_rollouts(context, namespace, workloads, deadline, clock)
    phases["rollout"] = step["seconds"]
    for name, (done, detail) in where.items():
        report.check(f"rolled out {name}", done, detail, limit=f"{wait_seconds:g} s")
    report.measured.update(workloads=len(workloads))
    return []
