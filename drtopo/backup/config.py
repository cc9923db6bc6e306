"""Configuration backup and restore: the project's stack files, the rendered MirrorMaker 2 properties and the
namespace's Kubernetes objects, kept in the config bucket and brought back byte for byte.

A backup is a set of objects under `config/<stack>/<YYYYMMDDTHHMMSSZ>/` plus a `manifest.json` naming each file
with its SHA-256; every object also carries its SHA-256 in metadata. Kubernetes objects are exported with kubectl
when a cluster is reachable, without the fields the server owns (so a restore applies to a fresh cluster); Secrets
are recorded by name and key only, never their values. A dry run returns what it would upload or write (`Planned`),
for the command to show.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

from drtopo.backup.store import encryption_args, s3_client
from drtopo.mm2_properties import render_mm2_properties
from drtopo.outputs import StackOutputs
from drtopo.report import FAIL, PASS, SKIP, BadInput, Clock, Report, Unsafe
from drtopo.settings import load_settings

log = logging.getLogger(__name__)

PREFIX = "config"
MANIFEST = "manifest.json"
KUBE_KINDS = ("configmaps", "deployments", "cronjobs", "services", "serviceaccounts", "roles", "rolebindings")
# Metadata the API server sets and a fresh cluster refuses or ignores; `status` goes too.
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "managedFields")


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
    kube, outcome, note = kubernetes_objects(outputs.namespace)
    return files + kube, outcome, note


def _kubectl(*args: str) -> subprocess.CompletedProcess[str] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    log.debug("kubectl %s", " ".join(args))
    try:
        done = subprocess.run(
            [kubectl, "--request-timeout=10s", *args], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        log.debug("kubectl %s: no answer in 30 s", " ".join(args))
        return None
    log.debug("kubectl exit %s: %s", done.returncode, done.stderr.strip()[-2000:])
    return done


def without_server_fields(listing: dict[str, Any]) -> dict[str, Any]:
    """A `kubectl get -o json` list with each item's server-owned metadata and status removed (pure)."""

    def strip(item: dict[str, Any]) -> dict[str, Any]:
        metadata = {k: v for k, v in item.get("metadata", {}).items() if k not in SERVER_FIELDS}
        return {**{k: v for k, v in item.items() if k != "status"}, "metadata": metadata}

    return {
        "apiVersion": listing.get("apiVersion", "v1"),
        "kind": listing.get("kind", "List"),
        "items": [strip(item) for item in listing.get("items", [])],
    }


def kubernetes_objects(namespace: str) -> tuple[list[ConfigFile], str, str]:
    probe = _kubectl("get", "namespace", namespace, "-o", "name")
    if probe is None or probe.returncode != 0:
        why = "no kubectl on PATH" if probe is None else (probe.stderr.strip().splitlines() or ["unreachable"])[-1]
        return [], SKIP, f"not exported: no reachable cluster ({why})"
    files = []
    for kind in KUBE_KINDS:
        proc = _kubectl("get", kind, "-n", namespace, "-o", "json")
        if proc is not None and proc.returncode == 0:
            text = yaml.safe_dump(without_server_fields(json.loads(proc.stdout)), sort_keys=False)
            files.append(ConfigFile(f"kubernetes/{namespace}/{kind}.yaml", text.encode()))
    secrets = _kubectl("get", "secrets", "-n", namespace, "-o", "json")
    if secrets is not None and secrets.returncode == 0:
        names = {
            item["metadata"]["name"]: sorted((item.get("data") or {}).keys())
            for item in json.loads(secrets.stdout).get("items", [])
        }
        files.append(ConfigFile(f"kubernetes/{namespace}/secret-keys.json", json.dumps(names, indent=2).encode()))
    return files, PASS, f"exported {len(files)} files from namespace {namespace} (Secrets: names and keys only)"


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
        report.record("kubernetes objects", *apply_kubernetes(folder, [f.name for f in files]))
    report.measured.update(prefix=prefix, files=len(files), destination=str(folder))
    return planned


def apply_kubernetes(folder: Path, names: list[str]) -> tuple[str, str]:
    """(outcome, detail): `kubectl apply` of the restored manifests when a cluster is reachable."""
    manifests = [n for n in names if n.startswith("kubernetes/") and n.endswith(".yaml")]
    if not manifests:
        return SKIP, "none in this backup"
    probe = _kubectl("version", "-o", "json")
    if probe is None or probe.returncode != 0:
        return SKIP, f"{len(manifests)} manifests written, not applied: no reachable cluster"
    # A kind the namespace had none of was exported as an empty list, which kubectl refuses to apply.
    manifests = [n for n in manifests if (yaml.safe_load((folder / n).read_text()) or {}).get("items")]
    for name in manifests:
        proc = _kubectl("apply", "-f", str(folder / name))
        if proc is None or proc.returncode != 0:
            return FAIL, f"kubectl apply -f {folder / name} failed: {proc.stderr.strip() if proc else 'timeout'}"
    return PASS, f"applied {len(manifests)} manifests"
