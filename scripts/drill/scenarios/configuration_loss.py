"""configuration-loss: the stack's configuration is lost, in files and in Kubernetes, and restored from the backup.

The backup is taken with `scripts.backup config` (the stack files, the MirrorMaker properties and the namespace's
Kubernetes objects). Then the stack files are deleted, and in the stack's namespace the service's ConfigMap, its
database Secret and its Deployment (the runbook's Kubernetes resource backup and application recovery).
`scripts.restore config` brings the files back and applies the exported objects in dependency order, writing the
Secret before the workloads from the secret store (Secrets Manager of the stack's region, the lab's emulator) as the
program declares it (drtopo:secrets): no backup holds its value, and the drill writes none itself. Files are
compared byte for byte (SHA-256), the objects by spec with what was there.
RTO is the time from the loss until everything is back, equal, and the service answers again; RPO is 0 when
nothing differs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drtopo.backup import config as config_backup
from drtopo.backup import secrets as secret_store
from drtopo.backup.store import s3_client
from lab import kube, kube_workloads
from scripts.drill.measured import Figures
from scripts.drill.scenarios import phases
from scripts.drill.scenarios.context import exit_detail, patience, wait_healthy
from scripts.drill.scenarios.scenario import Scenario, ScenarioRun

STACK = "prod"
# What each lost object is compared by once restored.
COMPARED = {"configmap": ("data",), "deployment": ("spec",), "secret": ("type",)}


def _check(report: Path, name: str) -> dict[str, Any]:
    """One check of a command's JSON report by name ({} when the report or the check is missing)."""
    if not report.is_file():
        return {}
    return next((c for c in json.loads(report.read_text()).get("checks", []) if c.get("name") == name), {})


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("Pulumi*.yaml"))}


def _spec(document: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    if document is None:
        return None
    fields = {key: document.get(key) for key in COMPARED[kind]}
    if kind == "secret":
        fields["keys"] = sorted((document.get("data") or {}).keys())
    return fields


@dataclass
class ConfigFigures(Figures):
    files_restored: int
    kubernetes_objects_restored: int


@dataclass
class _Config:
    namespace: str
    secret: str
    lost: dict[str, str]  # kind -> name of the Kubernetes objects deleted
    before: dict[str, str]  # stack file -> SHA-256
    objects: dict[str, dict[str, Any] | None]  # kind -> what it was, as compared
    failure_at: float
    restored_at: float = 0.0


class ConfigurationLoss(Scenario[_Config]):
    name = "configuration-loss"
    objectives_key = "configuration_loss"
    order = 2
    writes_rows = False
    rto_phases = (
        phases.instant("detection", "not modelled: a lost configuration raises no health check"),
        phases.decision,
        phases.action,
        phases.reconnect,
    )

    def inject(self, run: ScenarioRun) -> _Config:
        ctx, clock, lab = run.ctx, run.clock, run.ctx.lab
        project, namespace = lab.project_dir, lab.region(STACK).namespace
        secret = lab.region(STACK).settings.kubernetes.database_secret
        lost = {
            "configmap": kube_workloads.SERVICE_CONFIG,
            "secret": secret,
            "deployment": kube_workloads.SERVICE_APP,
        }
        # What an earlier restore wrote next to the stack files is not part of the configuration.
        for folder in ("kubernetes", "mirrormaker"):
            shutil.rmtree(project / folder, ignore_errors=True)
        before = _digests(project)
        objects = {
            kind: _spec(kube_workloads.get(lab.root, kind, name, namespace), kind) for kind, name in lost.items()
        }
        with clock.step("scripts.backup config"):
            code = ctx.run("backup", ["config", *self._stack(run), "--json", str(ctx.json_dir / "config-backup.json")])
        run.checks.check(
            "config backup succeeded", code == 0, exit_detail(code, ctx.json_dir / "config-backup.json"), code, 0
        )
        exported = self._exported(run, namespace)
        run.checks.check(
            "kubernetes objects exported",
            bool(exported),
            f"{len(exported)} files of namespace {namespace} in the backup"
            + (f": {', '.join(exported)}" if exported else ""),
        )
        failure_at = run.fault_injected()
        with clock.step("configuration lost: the stack files, the service's ConfigMap, Secret and Deployment"):
            for name in before:
                (project / name).unlink()
            for kind, name in lost.items():
                kube.kubectl(lab.root, "delete", kind, name, "-n", namespace, "--wait=true", "--timeout=60s")
        return _Config(namespace, secret, lost, before, objects, failure_at)

    @staticmethod
    def _stack(run: ScenarioRun) -> list[str]:
        return ["--stack", STACK, "--outputs", str(run.ctx.outputs_path(STACK))]

    @staticmethod
    def _exported(run: ScenarioRun, namespace: str) -> list[str]:
        """The files of `namespace`'s Kubernetes objects the newest configuration backup holds, by its manifest."""
        outputs = run.ctx.outputs(STACK)
        s3 = s3_client(outputs)
        prefix = config_backup.latest_prefix(s3, outputs.config_bucket, STACK)
        body = s3.get_object(Bucket=outputs.config_bucket, Key=prefix + config_backup.MANIFEST)["Body"].read()
        files: dict[str, Any] = json.loads(body)["files"]
        return sorted(Path(name).name for name in files if name.startswith(f"kubernetes/{namespace}/"))

    def recover(self, run: ScenarioRun, config: _Config) -> None:
        ctx, clock, lab = run.ctx, run.clock, run.ctx.lab
        with clock.step(
            "scripts.restore config (files; the exported objects applied in order, the Secrets from the secret store)"
        ):
            code = ctx.run(
                "restore", ["config", *self._stack(run), "--json", str(ctx.json_dir / "config-restore.json")]
            )
        run.checks.check(
            "config restore succeeded", code == 0, exit_detail(code, ctx.json_dir / "config-restore.json"), code, 0
        )
        inventory_file = lab.project_dir / "kubernetes" / config.namespace / secret_store.INVENTORY_FILE
        inventory = json.loads(inventory_file.read_text())["secrets"] if inventory_file.is_file() else {}
        run.checks.check(
            "secret inventory is the program's declaration",
            sorted(inventory.get(config.secret, {})) == ["password"],
            f"backup's inventory of {config.secret}: {inventory.get(config.secret)}",
        )
        written = _check(ctx.json_dir / "config-restore.json", f"secret {config.secret}")
        run.checks.check(
            "secret written from the secret store by restore config",
            written.get("outcome") == "pass",
            f"{written.get('outcome')}: {written.get('detail')}",
        )
        with clock.step("the service runs again"):
            lab.region(STACK).service.wait(timeout=patience(run.result.objective_rto_seconds))
            wait_healthy(ctx.outputs(STACK).service_url, timeout=patience(run.result.objective_rto_seconds))
        config.restored_at = time.time()

    def verify(self, run: ScenarioRun, config: _Config) -> None:
        lab, before, lost = run.ctx.lab, config.before, config.lost
        after = _digests(lab.project_dir)
        differing = sorted(n for n in before if after.get(n) != before[n])
        run.checks.check(
            "restored byte for byte",
            not differing,
            f"{len(before) - len(differing)}/{len(before)} files identical"
            + (f"; differ: {differing}" if differing else ""),
        )
        unequal = []
        for kind, name in lost.items():
            now = _spec(kube_workloads.get(lab.root, kind, name, config.namespace), kind)
            if now is None or now != config.objects[kind]:
                unequal.append(f"{kind}/{name}")
        run.checks.check(
            "kubernetes objects restored equal in spec",
            not unequal and all(config.objects.values()),
            f"{len(lost) - len(unequal)}/{len(lost)} equal" + (f"; differ: {unequal}" if unequal else ""),
        )
        ok = not differing and not unequal
        m = run.measured
        m.rto_seconds = round(config.restored_at - config.failure_at, 3) if ok else None
        m.rpo_seconds = 0.0 if ok else None
        m.rows_lost = 0
        m.details = ConfigFigures(
            files_restored=len(before) - len(differing), kubernetes_objects_restored=len(lost) - len(unequal)
        )
