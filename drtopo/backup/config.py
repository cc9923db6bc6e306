"""Configuration backup and restore: the project's stack files, the rendered MirrorMaker 2 properties and the
namespace's Kubernetes objects, kept in the config bucket and brought back byte for byte.

A backup is a set of objects under `config/<stack>/<YYYYMMDDTHHMMSSZ>/` plus a `manifest.json` naming each file
with its SHA-256; every object also carries its SHA-256 in metadata. The namespace is exported from the stack's own
cluster when it is reachable (drtopo/backup/kube_export.py: the Namespace and every kind it uses, without the fields
the server owns, so a restore applies to a fresh cluster; a kind that cannot be read fails the backup). Secrets are
never read: the inventory beside them is the program's declaration (drtopo:secrets), and a restore writes them from
Secrets Manager (drtopo/backup/secrets.py). A dry run returns what it would upload or write (`Planned`), for the
command to show.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from drtopo.backup import kube_export, secrets
from drtopo.backup.store import encryption_args, s3_client
from drtopo.mm2_properties import render_mm2_properties
from drtopo.outputs import StackOutputs
from drtopo.report import FAIL, PASS, SKIP, BadInput, Clock, Report, Unsafe
from drtopo.settings import Settings, load_settings, stack_file

log = logging.getLogger(__name__)

PREFIX = "config"
MANIFEST = "manifest.json"


def stack_prefix(stack: str) -> str:
    return f"{PREFIX}/{stack}/"


@dataclass(frozen=True)
class ConfigFile:
    name: str  # relative path inside the backup, also where it is restored under the destination
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Planned:
    """A file a dry run would upload (backup) or write (restore): where to, and its size."""

    action: str  # "upload" or "write"
    target: str  # s3://bucket/key, or the path restored to
    size: int

    def __str__(self) -> str:
        return f"would {self.action} {self.target} ({self.size} bytes)"


def collect(stack: str, outputs: StackOutputs, folder: Path) -> tuple[list[ConfigFile], str, str]:
    """The files to back up, and how Kubernetes was handled: (files, outcome, detail) - exported, or why not."""
    files = [ConfigFile(p.name, p.read_bytes()) for p in sorted(folder.glob("Pulumi*.yaml"))]
    if not any(f.name == f"Pulumi.{stack}.yaml" for f in files):
        raise BadInput(f"stack file Pulumi.{stack}.yaml is not in {folder}; set DRTOPO_PROJECT_DIR to the project")
    settings = load_settings(stack, folder)
    mm2 = render_mm2_properties(
        settings, bootstrap_servers=outputs.kafka_bootstrap, peer_bootstrap_servers=outputs.peer_kafka_bootstrap
    )
    files.append(ConfigFile(f"mirrormaker/{stack}.properties", mm2.encode()))
    kube, outcome, note = kubernetes_objects(outputs.namespace, settings)
    return files + kube, outcome, note


def kubernetes_objects(namespace: str, settings: Settings) -> tuple[list[ConfigFile], str, str]:
    """The namespace's objects on the stack's own cluster (drtopo/backup/kube_export.py), those of the other
    namespaces settings name (kubernetes.exportNamespaces: monitoring), and the Secret inventory the program
    declares: (files, outcome, detail). A kind that cannot be read fails; one not served is skipped; both are named
    in the detail. Unreachable: a skip with its reason."""
    context = settings.kubernetes.context
    exported = kube_export.export(namespace, context)
    if not exported.reachable:
        return [], exported.outcome, exported.summary(namespace)
    others = settings.kubernetes.export_namespaces
    exports = [(namespace, exported)] + [(ns, kube_export.export(ns, context)) for ns in others]
    files = [ConfigFile(name, content) for _, e in exports for name, content in e.files.items()]
    files.append(ConfigFile(*secrets.inventory_file(namespace, settings.secrets)))
    outcomes = {e.outcome for _, e in exports}
    outcome = FAIL if FAIL in outcomes else SKIP if SKIP in outcomes else PASS
    summaries = "; ".join(e.summary(ns) for ns, e in exports)
    return files, outcome, f"{summaries}; {secrets.inventory_note(settings.secrets)}"


def backup(
    stack: str, outputs: StackOutputs, report: Report, clock: Clock, dry_run: bool, project_dir: Path
) -> list[Planned]:
    """Upload the configuration files under a new timestamped prefix, each checked back by its SHA-256; a dry run
    uploads nothing and returns what it would upload (a run returns nothing: its uploads are in the report)."""
    files, kube_outcome, kube_note = collect(stack, outputs, project_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    prefix = f"{stack_prefix(stack)}{stamp}/"
    manifest = {
        "stack": stack,
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {f.name: {"sha256": f.sha256, "bytes": len(f.content)} for f in files},
    }
    report.record("kubernetes objects", kube_outcome, kube_note)
    if dry_run:
        report.check("plan", True, f"{len(files)} files under {prefix}")
        return [Planned("upload", f"s3://{outputs.config_bucket}/{prefix}{f.name}", len(f.content)) for f in files]
    s3 = s3_client(outputs)
    with clock.step(f"upload {len(files)} configuration files"):
        for f in [*files, ConfigFile(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())]:
            s3.put_object(
                Bucket=outputs.config_bucket,
                Key=prefix + f.name,
                Body=f.content,
                Metadata={"sha256": f.sha256, "stack": stack},
                **encryption_args(outputs),
            )
    for f in files:
        stored = s3.head_object(Bucket=outputs.config_bucket, Key=prefix + f.name)
        report.check(f"uploaded {f.name}", stored["Metadata"].get("sha256") == f.sha256, f"sha256 {f.sha256[:12]}…")
    report.measured.update(prefix=prefix, files=len(files))
    return []


def latest_prefix(s3: Any, bucket: str, stack: str) -> str:
    prefixes = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=stack_prefix(stack)):
        prefixes += [o["Key"][: -len(MANIFEST)] for o in page.get("Contents", []) if o["Key"].endswith(MANIFEST)]
    if not prefixes:
        raise BadInput(f"bucket {bucket} holds no configuration backup of stack {stack!r}; run `backup config`")
    return max(prefixes)


def restore(
    stack: str,
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    dry_run: bool,
    prefix: str | None,
    dest: Path | None,
    force: bool,
    project_dir: Path,
) -> list[Planned]:
    """Write every file of the backup under `dest` (default: the project folder), checking SHA-256 before and after;
    a dry run writes nothing and returns what it would write (a run returns nothing).

    A file that exists with other content is refused (exit 3) unless `force`: it may be a newer edit.
    """
    s3 = s3_client(outputs)
    prefix = prefix or latest_prefix(s3, outputs.config_bucket, stack)
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    try:
        raw = s3.get_object(Bucket=outputs.config_bucket, Key=prefix + MANIFEST)["Body"].read()
    except ClientError:
        raise BadInput(
            f"{prefix} in bucket {outputs.config_bucket} has no {MANIFEST}; expected a `backup config`"
        ) from None
    manifest = json.loads(raw)
    folder = dest or project_dir
    with clock.step(f"download {len(manifest['files'])} files from {prefix}"):
        files = [
            ConfigFile(name, s3.get_object(Bucket=outputs.config_bucket, Key=prefix + name)["Body"].read())
            for name in sorted(manifest["files"])
        ]
    corrupt = [f.name for f in files if f.sha256 != manifest["files"][f.name]["sha256"]]
    if corrupt:
        raise Unsafe(f"objects {corrupt} under {prefix} do not match the manifest's SHA-256; nothing was written")
    conflicts = [f.name for f in files if (folder / f.name).exists() and (folder / f.name).read_bytes() != f.content]
    if conflicts and not force:
        raise Unsafe(f"{conflicts} in {folder} exist with other content; pass --force to overwrite them")
    planned: list[Planned] = []
    for f in files:
        path = folder / f.name
        if dry_run:
            planned.append(Planned("write", str(path), len(f.content)))
            continue
        state = "identical" if path.exists() and path.read_bytes() == f.content else "written"
        path.parent.mkdir(parents=True, exist_ok=True)
        if state == "written":
            tmp = path.with_name(path.name + ".drtopo-tmp")
            tmp.write_bytes(f.content)
            tmp.replace(path)
        same = hashlib.sha256(path.read_bytes()).hexdigest() == f.sha256
        report.check(f"restored {f.name}", same, f"{state}, sha256 {f.sha256[:12]}…")
    if not dry_run:
        names = [f.name for f in files]
        report.record("kubernetes objects", *apply_kubernetes(stack, outputs, report, folder, project_dir, names))
    report.measured.update(prefix=prefix, files=len(files), destination=str(folder))
    return planned


def apply_kubernetes(
    stack: str, outputs: StackOutputs, report: Report, folder: Path, project_dir: Path, names: list[str]
) -> tuple[str, str]:
    """(outcome, detail): the restored manifests applied to the stack's own cluster in dependency order, the
    declared Secrets written from the secret store before any workload (drtopo/backup/secrets.py)."""
    # The restored stack file names the cluster and the Secrets (the project's own when restored elsewhere).
    settings = load_settings(stack, folder if stack_file(stack, folder).is_file() else project_dir)

    def write_secrets() -> bool:
        before = report.count(FAIL)
        secrets.restore(settings, outputs, report, dry_run=False)
        return report.count(FAIL) == before

    return kube_export.apply(folder, names, settings.kubernetes.context, write_secrets)
