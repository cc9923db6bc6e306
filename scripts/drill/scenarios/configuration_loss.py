"""configuration-loss: the stack's configuration is lost, in files and in Kubernetes, and restored from the backup.

The backup is taken with `scripts.backup config` (the stack files, the MirrorMaker properties and the namespace's
Kubernetes objects). Then the stack files are deleted, and in the stack's namespace the service's ConfigMap, its
database Secret and its Deployment (the runbook's Kubernetes resource backup and application recovery).
`scripts.restore config` brings the files back and applies the exported objects; the Secret, whose value no backup
holds (only its name and keys), is recreated from the secret store the lab stands in for and checked against the
keys the backup recorded. Files are compared byte for byte (SHA-256), the objects by spec with what was there.
RTO is the time from the loss until everything is back, equal, and the service answers again; RPO is 0 when
nothing differs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from lab import kube, kube_workloads
from scripts.drill.report import ScenarioResult
from scripts.drill.scenarios.context import DrillContext, patience, wait_healthy

NAME = "configuration-loss"
# What each lost object is compared by once restored.
COMPARED = {"configmap": ("data",), "deployment": ("spec",), "secret": ("type",)}


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("Pulumi*.yaml"))}


def _spec(document: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    if document is None:
        return None
    fields = {key: document.get(key) for key in COMPARED[kind]}
    if kind == "secret":
        fields["keys"] = sorted((document.get("data") or {}).keys())
    return fields


def run(ctx: DrillContext, result: ScenarioResult) -> None:
    clock = ctx.clock()
    stack = "prod"
    lab = ctx.lab
    project, namespace = lab.project_dir, lab.namespace(stack)
    secret = lab.settings(stack).kubernetes.database_secret
    lost = {
        "configmap": kube_workloads.SERVICE_CONFIG,
        "secret": secret,
        "deployment": kube_workloads.SERVICE_APP,
    }
    outputs = ["--stack", stack, "--outputs", str(ctx.outputs_path(stack))]
    # What an earlier restore wrote next to the stack files is not part of the configuration.
    for folder in ("kubernetes", "mirrormaker"):
        shutil.rmtree(project / folder, ignore_errors=True)
    before = _digests(project)
    objects = {kind: _spec(kube_workloads.get(lab.root, kind, name, namespace), kind) for kind, name in lost.items()}
    with clock.step("scripts.backup config"):
        code = ctx.run("backup", ["config", *outputs, "--json", str(ctx.json_dir / "config-backup.json")])
    result.checks.check("config backup succeeded", code == 0, f"exit code {code}", code, 0)
    backup_report = json.loads((ctx.json_dir / "config-backup.json").read_text())
    exported = next((c for c in backup_report["checks"] if c["name"] == "kubernetes objects"), None)
    result.checks.check(
        "kubernetes objects exported",
        exported is not None and exported["outcome"] == "pass",
        exported["detail"] if exported else "no such check in the backup report",
    )
    failure_at = time.time()
    result.measured["failure_at_seconds"] = round(clock.elapsed(), 3)
    with clock.step("configuration lost: the stack files, the service's ConfigMap, Secret and Deployment"):
        for name in before:
            (project / name).unlink()
        for kind, name in lost.items():
            kube.kubectl(lab.root, "delete", kind, name, "-n", namespace, "--wait=true", "--timeout=60s")
    with clock.step("scripts.restore config (files, then kubectl apply of the exported objects)"):
        code = ctx.run("restore", ["config", *outputs, "--json", str(ctx.json_dir / "config-restore.json")])
    result.checks.check("config restore succeeded", code == 0, f"exit code {code}", code, 0)
    with clock.step("the Secret recreated from the secret store, keys as the backup recorded"):
        recorded = json.loads((project / "kubernetes" / namespace / "secret-keys.json").read_text())
        values = {"password": lab.password}
        result.checks.check(
            "secret keys as recorded",
            recorded.get(secret) == sorted(values),
            f"backup records {secret}: {recorded.get(secret)}",
        )
        restored_secret = kube_workloads.secret_object(namespace, secret, values)
        kube.kubectl(lab.root, "apply", "-f", "-", stdin=json.dumps(restored_secret))
    with clock.step("the service runs again"):
        lab.wait_service(stack, timeout=patience(result.objective_rto_seconds))
        wait_healthy(ctx.outputs(stack).service_url, timeout=patience(result.objective_rto_seconds))
    restored_at = time.time()
    after = _digests(project)
    differing = sorted(n for n in before if after.get(n) != before[n])
    result.checks.check(
        "restored byte for byte",
        not differing,
        f"{len(before) - len(differing)}/{len(before)} files identical"
        + (f"; differ: {differing}" if differing else ""),
    )
    unequal = []
    for kind, name in lost.items():
        now = _spec(kube_workloads.get(lab.root, kind, name, namespace), kind)
        if now is None or now != objects[kind]:
            unequal.append(f"{kind}/{name}")
    result.checks.check(
        "kubernetes objects restored equal in spec",
        not unequal and all(objects.values()),
        f"{len(lost) - len(unequal)}/{len(lost)} equal" + (f"; differ: {unequal}" if unequal else ""),
    )
    ok = not differing and not unequal
    result.measured.update(
        rto_seconds=round(restored_at - failure_at, 3) if ok else None,
        rpo_seconds=0.0 if ok else None,
        rows_lost=0,
        files_restored=len(before) - len(differing),
        kubernetes_objects_restored=len(lost) - len(unequal),
    )
    result.steps = clock.steps
