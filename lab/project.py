"""The lab's copy of the Pulumi project (root/project): the repo's stack files rewritten with the lab's endpoints.

The drill hands it to each command as its Context's `project_dir`; commands run by hand find it through
DRTOPO_PROJECT_DIR, which the lab's env file (`set -a; . .lab/env`) sets. Either way a drill's role switch edits the
copy, never the repository. The rewrite is a pure function of the repo's config and the lab's addresses;
`write_project` only does the file I/O.
"""

from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drtopo.settings import PROJECT, Role, load_settings, stack_file
from lab.aws import credential_sources

REPO_DIR = Path(__file__).resolve().parent.parent
# The lab stands in for the shipped pair of stacks (a team may name its own stacks freely; the lab keeps these two).
LAB_STACKS = ("prod", "dr")
LAB_HOST = "127.0.0.1"
# Route53 records need a host name; the stand-ins listen on loopback, told apart by the health check's port.
LAB_ENDPOINT = "localhost"


@dataclass(frozen=True)
class StackEndpoints:
    """Where one stack's servers listen in the lab."""

    db_port: int
    kafka_port: int
    service_port: int
    # The service stand-in runs on the lab's Kubernetes node (hostNetwork), so clients reach it at the node's address.
    service_host: str = LAB_HOST

    @property
    def kafka_bootstrap(self) -> str:
        return f"{LAB_HOST}:{self.kafka_port}"

    @property
    def service_url(self) -> str:
        return f"http://{self.service_host}:{self.service_port}"


# The primary lease as the lab runs it when switched on (`Lab.set_fencing`, `python -m lab up --fencing lease`): a
# short lease so its fault rows and drill take seconds (production keeps its 30 s / 5 s defaults); the witness store
# in a third region with a gate of its own (lab/gates.py); the lab's guard fences as the lab's one database role
# (the lab's service stand-in writes as it too, so only it may end those sessions; on RDS neither is a superuser).
WITNESS_REGION = "eu-west-1"
LAB_LEASE = {
    "mode": "lease",
    "leaseSeconds": 6,
    "renewSeconds": 2,
    "witnessRegion": WITNESS_REGION,
    "witnessStack": "prod",
    "databaseRole": "postgres",
}

LAB_MIRROR_TUNING = {
    "replicationFactor": 1,
    "emitCheckpointsIntervalSeconds": 2,
    "syncGroupOffsetsIntervalSeconds": 2,
    "refreshGroupsIntervalSeconds": 5,
    "refreshTopicsIntervalSeconds": 5,
    "offsetLagMax": 10,
}


# The stand-in listens on one port of the node's own network (hostNetwork), so one node runs one pod of it: the
# primary's count is 1 here (production keeps its chart's); the standby's stays the shipped 0, pilot light.
LAB_APPLICATION = {"primaryReplicas": 1}
LAB_CONSISTENCY_WINDOW_S = 60  # drtopo:service.consistencyWindowSeconds in the lab (see lab_config)


def lab_config(
    config: dict[str, Any],
    own: StackEndpoints,
    peer: StackEndpoints,
    role: Role,
    standby_replicas: int | None = None,
) -> dict[str, Any]:
    """A stack's `config:` mapping rewritten for the lab: loopback endpoints, replication factors 1, given role, one
    application replica on the primary; `standby_replicas` the standby's (None: the repository's, pilot light)."""
    out = copy.deepcopy(config)
    key = f"{PROJECT}:"
    out[f"{key}role"] = role.value
    kafka = dict(out.get(f"{key}kafka") or {})
    kafka["bootstrapServers"] = own.kafka_bootstrap
    kafka["peerBootstrapServers"] = peer.kafka_bootstrap
    mirror = dict(kafka.get("mirror") or {})
    # One broker per cluster; and MirrorMaker tuned for a lab whose drills last seconds, not hours: new groups
    # and topics are noticed within 5 s and checkpoints follow commits within 2 s (production keeps its defaults).
    mirror.update(LAB_MIRROR_TUNING)
    kafka["mirror"] = mirror
    out[f"{key}kafka"] = kafka
    database = dict(out.get(f"{key}database") or {})
    database.update(port=own.db_port, username="postgres")
    out[f"{key}database"] = database
    dns = dict(out.get(f"{key}dns") or {})
    dns.update(endpoint=LAB_ENDPOINT, healthCheckPort=own.service_port, healthCheckType="HTTP")
    out[f"{key}dns"] = dns
    # The lab's database is reset between tests under a Kafka that keeps its records: an event consumed before a
    # reset has no row after it. kafka.consistency looks at the last minute only, where the lab's own checks are.
    service = dict(out.get(f"{key}service") or {})
    service.setdefault("consistencyWindowSeconds", LAB_CONSISTENCY_WINDOW_S)
    out[f"{key}service"] = service
    application = dict(out.get(f"{key}application") or {})
    application.update(LAB_APPLICATION)
    if standby_replicas is not None:
        application["standbyReplicas"] = standby_replicas
    out[f"{key}application"] = application
    return out


def lab_namespace(namespace: str, region: str) -> str:
    """One lab node stands in for both regions' clusters, so each stack's objects get a namespace of their own."""
    return f"{namespace}-{region}"


def with_lab_secrets(config: dict[str, Any]) -> dict[str, Any]:
    """The stack's drtopo:secrets plus the lab's own: the emulator's dummy credentials its backup jobs read."""
    out = copy.deepcopy(config)
    declared = list(out.get(f"{PROJECT}:secrets") or [])
    out[f"{PROJECT}:secrets"] = declared + [s for s in credential_sources() if s not in declared]
    return out


def with_namespace(config: dict[str, Any], namespace: str) -> dict[str, Any]:
    out = copy.deepcopy(config)
    out[f"{PROJECT}:kubernetes"] = {**(out.get(f"{PROJECT}:kubernetes") or {}), "namespace": namespace}
    return out


def with_topics_rf1(stack: str, config: dict[str, Any], source_dir: Path) -> dict[str, Any]:
    """Spell out the topic list (defaults included) with replication factor 1: the lab has one broker per cluster."""
    settings = load_settings(stack, source_dir)
    topics = [
        {
            "name": t.name,
            "partitions": t.partitions,
            "replicationFactor": 1,
            "retentionMs": t.retention_ms,
            "mirrored": t.mirrored,
        }
        for t in settings.kafka.topics
    ]
    out = copy.deepcopy(config)
    out[f"{PROJECT}:kafka"] = {**out[f"{PROJECT}:kafka"], "topics": topics}
    return out


def with_fencing(config: dict[str, Any], fencing: dict[str, Any] | None) -> dict[str, Any]:
    """`config` with `drtopo:fencing` set to `fencing` (None: left as the repo's, the lease off) (pure)."""
    out = copy.deepcopy(config)
    if fencing is not None:
        out[f"{PROJECT}:fencing"] = dict(fencing)
    return out


def replace_file(path: Path, text: str) -> None:
    """Write `path` in one atomic replace: the lab reads the project copy from other threads (each region's settings,
    at every access) while a reset rewrites it, and a half-written stack file can parse as YAML that lacks its role."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_project(
    project_dir: Path,
    endpoints: dict[str, StackEndpoints],
    roles: dict[str, Role] | None = None,
    source_dir: Path = REPO_DIR,
    standby_replicas: int | None = None,
    fencing: dict[str, Any] | None = None,
) -> None:
    """Write Pulumi.yaml and Pulumi.<stack>.yaml for both stacks into `project_dir` (roles default to the repo's;
    `standby_replicas`: the application's on the standby, for a warm-standby drill; `fencing`: the lease's settings
    of both stacks, e.g. LAB_LEASE)."""
    project_dir.mkdir(parents=True, exist_ok=True)
    replace_file(project_dir / "Pulumi.yaml", (source_dir / "Pulumi.yaml").read_text())
    for stack in LAB_STACKS:
        document = yaml.safe_load(stack_file(stack, source_dir).read_text()) or {}
        config = dict(document.get("config") or {})
        peer = next(s for s in LAB_STACKS if s != stack)
        settings = load_settings(stack, source_dir)
        role = (roles or {}).get(stack) or settings.role
        own, other = endpoints[stack], endpoints[peer]
        config = with_topics_rf1(stack, lab_config(config, own, other, role, standby_replicas), source_dir)
        config = with_namespace(config, lab_namespace(settings.kubernetes.namespace, settings.region))
        config = with_lab_secrets(config)
        config = with_fencing(config, fencing)
        header = f"# Written by the drtopo lab from {stack_file(stack, source_dir)}; drills may switch roles here.\n"
        text = header + yaml.safe_dump({**document, "config": config}, sort_keys=False)
        replace_file(stack_file(stack, project_dir), text)
