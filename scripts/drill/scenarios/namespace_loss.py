"""namespace-loss: the primary's whole namespace is deleted under load and rebuilt by `restore namespace`.

The runbook's recovery-time test (`kubectl delete namespace`, then a full recovery), played on the
configuration-loss row of the objectives table. The namespace holds what the program and the application's chart
put there (accounts, roles, ConfigMaps, the Secrets, CronJobs, MirrorMaker's and the service's Deployments, the
service's Service, Ingress, autoscaler and disruption budget) and a volume claim the scenario adds (the lab has no
volume provisioner: it stays Pending). `scripts.backup config` exports it, the namespace is deleted while the
service takes the load's writes, and `scripts.restore namespace` alone rebuilds it: it waits until the namespace is
gone, applies the export in dependency order with the Secrets written from the secret store before the workloads,
and waits for the rollouts. RTO runs from the deletion until a write is acknowledged again, split by phase; every
object must come back equal to what it was, and every acknowledged row must be in the database.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import kube
from scripts.drill.measured import Figures
from scripts.drill.scenarios import phases
from scripts.drill.scenarios.context import exit_detail, patience, wait_healthy
from scripts.drill.scenarios.scenario import Scenario, ScenarioRun

STACK = "prod"
CLAIM = "namespace-loss-claim"
# The kinds compared before and after, and by what (the rest of an object is the server's or the cluster's).
KINDS = (
    "serviceaccounts,roles,rolebindings,configmaps,secrets,persistentvolumeclaims,deployments,cronjobs,services,"
    "ingresses,horizontalpodautoscalers,poddisruptionbudgets"
)
COMPARED: dict[str, tuple[str, ...]] = {
    "ServiceAccount": ("automountServiceAccountToken",),
    "Role": ("rules",),
    "RoleBinding": ("roleRef", "subjects"),
    "ConfigMap": ("data",),
    "Secret": ("type",),
    "PersistentVolumeClaim": ("spec.accessModes", "spec.resources"),
    "Deployment": ("spec",),
    "CronJob": ("spec",),
    "Service": ("spec.ports", "spec.selector"),
    "Ingress": ("spec",),
    "HorizontalPodAutoscaler": ("spec",),
    "PodDisruptionBudget": ("spec",),
}
# Made by the cluster in every namespace: back by themselves, not by the restore.
CLUSTER_MADE = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
# The restore's phases as its report times them (drtopo/backup/namespace.py), in order.
RESTORE_PHASES = ("terminating", "download", "apply", "secrets", "rollout")


def _field(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def comparable(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`Kind/name` -> the fields it is compared by, with its labels, of every object not made by the cluster (pure);
    a Secret by its type and key names only, never a value."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        kind, name = item["kind"], item["metadata"]["name"]
        if kind not in COMPARED or (kind, name) in CLUSTER_MADE:
            continue
        fields = {path: _field(item, path) for path in COMPARED[kind]}
        if kind == "Secret":
            # Written anew from the secret store, labelled as restore secrets' own (drtopo/backup/secrets.py).
            fields["keys"] = sorted((item.get("data") or {}).keys())
        else:
            fields["labels"] = item["metadata"].get("labels")
        out[f"{kind}/{name}"] = fields
    return out


def differences(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, str]:
    """`Kind/name` -> what is wrong with it after the rebuild: missing, or which fields differ (pure)."""
    out: dict[str, str] = {}
    for key, fields in before.items():
        now = after.get(key)
        if now is None:
            out[key] = "missing"
        elif now != fields:
            out[key] = "differs in " + ", ".join(sorted(f for f in fields if now.get(f) != fields[f]))
    return out


@dataclass
class NamespaceFigures(Figures):
    """The rebuild, phase by phase (seconds), and what came back."""

    objects_before: int
    objects_restored: int
    terminating_seconds: float | None = None
    download_seconds: float | None = None
    apply_seconds: float | None = None
    secrets_seconds: float | None = None
    rollout_seconds: float | None = None
    restore_command_seconds: float | None = None
    service_healthy_seconds: float | None = None
    first_write_seconds: float | None = None


@dataclass
class _Loss:
    namespace: str
    before: dict[str, dict[str, Any]]
    failure_at: float
    errors_at_failure: int
    restore_seconds: float = 0.0
    restored_at: float = 0.0
    healthy_at: float = 0.0
    first_write_at: float | None = None


class NamespaceLoss(Scenario[_Loss]):
    name = "namespace-loss"
    objectives_key = "configuration_loss"
    order = 7  # a variant of configuration-loss: not in `--scenario all`, named on its own
    writes_rows = False
    rto_phases = (
        phases.health_checks(lambda text: f"{text}: the service's pod goes with its namespace"),
        phases.decision,
        phases.action,
        phases.reconnect,
    )

    @staticmethod
    def _stack(run: ScenarioRun) -> list[str]:
        return ["--stack", STACK, "--outputs", str(run.ctx.outputs_path(STACK))]

    @staticmethod
    def _objects(run: ScenarioRun, namespace: str) -> dict[str, dict[str, Any]]:
        listing = kube.kubectl(run.ctx.lab.root, "get", KINDS, "-n", namespace, "-o", "json")
        return comparable(json.loads(listing.stdout)["items"])

    def inject(self, run: ScenarioRun) -> _Loss:
        ctx, clock, lab = run.ctx, run.clock, run.ctx.lab
        namespace = lab.region(STACK).namespace
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM, "namespace": namespace},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
        }
        kube.kubectl(lab.root, "apply", "-f", "-", stdin=json.dumps(claim))
        report = ctx.json_dir / "namespace-backup.json"
        with clock.step("scripts.backup config (the namespace's export)"):
            code = ctx.run("backup", ["config", *self._stack(run), "--json", str(report)])
        exported = _check(report, "kubernetes objects")
        run.checks.check("config backup succeeded", code == 0, exit_detail(code, report), code, 0)
        run.checks.check(
            "namespace exported, no kind unread",
            exported.get("outcome") == "pass",
            f"{exported.get('outcome')}: {exported.get('detail')}",
        )
        before = self._objects(run, namespace)
        writers = ctx.writers
        failure_at = run.fault_injected()
        with clock.step(f"delete namespace {namespace} (kubectl delete namespace, not waiting)"):
            kube.kubectl(lab.root, "delete", "namespace", namespace, "--wait=false")
        return _Loss(namespace, before, failure_at, sum(w.stats.errors for w in writers))

    def recover(self, run: ScenarioRun, loss: _Loss) -> None:
        ctx, clock = run.ctx, run.clock
        report = ctx.json_dir / "namespace-restore.json"
        with clock.step("scripts.restore namespace (wait out the deletion, apply in order, wait for rollouts)") as s:
            code = ctx.run("restore", ["namespace", *self._stack(run), "--json", str(report)])
        loss.restore_seconds, loss.restored_at = s["seconds"], time.time()
        run.checks.check("restore namespace succeeded", code == 0, exit_detail(code, report), code, 0)
        found = _measured(report).get("namespace_found")
        gone = _check(report, "lost namespace gone")
        run.checks.check(
            "the rebuild found the namespace lost (terminating or gone), never live",
            found in ("terminating", "absent") and gone.get("outcome", "pass") == "pass",
            f"found {found}" + (f"; {gone.get('detail')}" if gone else ""),
        )
        timeout = patience(run.result.objective_rto_seconds)
        with clock.step("the service answers and takes writes again"):
            wait_healthy(ctx.outputs(STACK).service_url, timeout=timeout)
            loss.healthy_at = time.time()
            deadline = time.monotonic() + timeout
            while loss.first_write_at is None and time.monotonic() < deadline:
                acks = [a for w in ctx.writers if (a := w.stats.first_ack_after(loss.healthy_at)) is not None]
                loss.first_write_at = min((a.at for a in acks), default=None)
                time.sleep(0.05)

    def verify(self, run: ScenarioRun, loss: _Loss) -> None:
        after = self._objects(run, loss.namespace)
        wrong = differences(loss.before, after)
        kinds = sorted({key.split("/")[0] for key in loss.before})
        run.checks.check(
            "every object back, equal",
            bool(loss.before) and not wrong,
            f"{len(loss.before) - len(wrong)}/{len(loss.before)} objects of {len(kinds)} kinds ({', '.join(kinds)})"
            + (f"; {'; '.join(f'{k}: {v}' for k, v in sorted(wrong.items()))}" if wrong else ""),
        )
        errors = sum(w.stats.errors for w in run.ctx.writers) - loss.errors_at_failure
        run.checks.check("the service was down (writes failed)", errors > 0, f"{errors} failed writes", errors)
        resumed = loss.first_write_at is not None
        run.checks.check("writes resumed", resumed, "a write was acknowledged after the rebuild")
        phase_seconds = _measured(run.ctx.json_dir / "namespace-restore.json").get("phase_seconds") or {}
        m = run.measured
        ok = not wrong and loss.first_write_at is not None
        m.rto_seconds = round(loss.first_write_at - loss.failure_at, 3) if ok and loss.first_write_at else None
        m.rpo_seconds = 0.0 if not wrong else None
        m.action, m.action_seconds = "scripts.restore namespace", round(loss.restore_seconds, 3)
        m.details = NamespaceFigures(
            objects_before=len(loss.before),
            objects_restored=len(loss.before) - len(wrong),
            **{f"{p}_seconds": phase_seconds.get(p) for p in RESTORE_PHASES},
            restore_command_seconds=round(loss.restore_seconds, 3),
            service_healthy_seconds=round(loss.healthy_at - loss.restored_at, 3),
            first_write_seconds=round(loss.first_write_at - loss.healthy_at, 3) if loss.first_write_at else None,
        )
        kube.kubectl(run.ctx.lab.root, "delete", "pvc", CLAIM, "-n", loss.namespace, "--wait=false", check=False)


def _report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _check(path: Path, name: str) -> dict[str, Any]:
    """One check of a command's JSON report by name ({} when the report or the check is missing)."""
    return next((c for c in _report(path).get("checks", []) if c.get("name") == name), {})


def _measured(path: Path) -> dict[str, Any]:
    measured: dict[str, Any] = _report(path).get("measured") or {}
    return measured
