"""Move the application to the backup Kafka cluster after its cluster failed: offsets, endpoints, restart, rollout.

The order is what makes it lose nothing: first the consumer group's offsets on the backup cluster are set from
MirrorMaker 2's checkpoints (drtopo/kafka/recover.py, refused while the group has members there); only then the
application's endpoints ConfigMap (components/application.py) names the backup cluster, and the Deployment is
restarted the way `kubectl rollout restart` does it (a `kubectl.kubernetes.io/restartedAt` annotation on the pod
template, kubectl's pkg/polymorphichelpers/objectrestarter.go), because the application reads its bootstrap at start.
Then the rollout is waited for as `kubectl rollout status` waits (kubectl's pkg/polymorphichelpers/rollout_status.go:
observedGeneration >= generation, updatedReplicas == replicas, no old replicas left, availableReplicas ==
updatedReplicas), with a deadline and progress.

Every step reads the state first, so a rerun after a crash resumes: a ConfigMap that already names the backup cluster
skips the offsets (its consumers may already be members there) and the switch; a restart already asked for (its
annotation names this switch) is not asked again. The ConfigMap's KAFKA_BACKUP_BOOTSTRAP_SERVERS is the cluster to
move to, as the application's pods reach it; the switch swaps the two, and KAFKA_CLUSTER_ALIAS names the one in use,
so validate knows which cluster the application consumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drtopo.backup.kube_export import kubectl
from drtopo.kafka.recover import restore_offsets
from drtopo.kafka.topics import clusters
from drtopo.mm2_properties import cluster_alias
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report, settings_for
from drtopo.settings import Settings

BOOTSTRAP_KEY = "KAFKA_BOOTSTRAP_SERVERS"
BACKUP_BOOTSTRAP_KEY = "KAFKA_BACKUP_BOOTSTRAP_SERVERS"
ALIAS_KEY = "KAFKA_CLUSTER_ALIAS"
BACKUP_ALIAS_KEY = "KAFKA_BACKUP_CLUSTER_ALIAS"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# Which switch asked for the restart: a rerun finds it and does not restart again.
SWITCH_ANNOTATION = "drtopo.io/kafka-cluster"
FIELD_MANAGER = "drtopo"
ROLLOUT_TIMEOUT_S = 300.0


class KubeError(RuntimeError):
    """kubectl did not answer, or answered with an error."""


@dataclass(frozen=True)
class Endpoints:
    """The Kafka part of the application's endpoints ConfigMap."""

    bootstrap: str
    alias: str
    backup_bootstrap: str
    backup_alias: str

    @classmethod
    def from_data(cls, data: Mapping[str, str], name: str) -> Endpoints:
        """From a ConfigMap's data; KubeError naming the keys it lacks (pure)."""
        keys = (BOOTSTRAP_KEY, ALIAS_KEY, BACKUP_BOOTSTRAP_KEY, BACKUP_ALIAS_KEY)
        missing = [k for k in keys if not data.get(k)]
        if missing:
            raise KubeError(f"ConfigMap {name} lacks {missing}; expected the keys components/application.py declares")
        return cls(*(data[k] for k in keys))

    def switched(self) -> Endpoints:
        """The backup cluster in use, the other one the backup (pure)."""
        return Endpoints(self.backup_bootstrap, self.backup_alias, self.bootstrap, self.alias)

    def as_data(self) -> dict[str, str]:
        return {
            BOOTSTRAP_KEY: self.bootstrap,
            ALIAS_KEY: self.alias,
            BACKUP_BOOTSTRAP_KEY: self.backup_bootstrap,
            BACKUP_ALIAS_KEY: self.backup_alias,
        }


def endpoints_data(settings: Settings) -> dict[str, str]:
    """The Kafka keys the program declares in the endpoints ConfigMap: this region's cluster in use, the peer's as
    the backup (pure)."""
    return Endpoints(
        settings.kafka.bootstrap_servers,
        cluster_alias(settings.region),
        settings.kafka.peer_bootstrap_servers,
        cluster_alias(settings.peer_region),
    ).as_data()


def rollout_done(deployment: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a Deployment's rollout is complete, and what it waits for, as `kubectl rollout status` decides (pure)."""
    metadata, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status", {})
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    total = int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))
    if int(status.get("observedGeneration", 0)) < int(metadata.get("generation", 0)):
        return False, "waiting for the deployment spec update to be observed"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return False, f"exceeded its progress deadline: {condition.get('message', '')}"
    if updated < wanted:
        return False, f"{updated} of {wanted} new replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{available} of {wanted} replicas available"


def restart_patch(at: datetime, cluster: str) -> dict[str, Any]:
    """The pod-template annotations `kubectl rollout restart` sets, and which switch set them (pure)."""
    annotations = {RESTARTED_AT: at.strftime("%Y-%m-%dT%H:%M:%SZ"), SWITCH_ANNOTATION: cluster}
    return {"spec": {"template": {"metadata": {"annotations": annotations}}}}


class Kube:
    """The stack's own cluster through kubectl (its kubeconfig context), JSON in and out."""

    def __init__(self, context: str | None, namespace: str) -> None:
        self.context, self.namespace = context, namespace

    def call(self, *args: str) -> Any:
        done = kubectl(self.context, *args, "-n", self.namespace, "-o", "json")
        if done is None:
            raise KubeError(f"kubectl {' '.join(args[:2])}: no kubectl or no answer from context {self.context}")
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise KubeError(f"kubectl {' '.join(args[:2])} in {self.namespace}: {lines[-1] if lines else 'failed'}")
        return json.loads(done.stdout)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(self.call("get", kind, name))

    def patch(self, kind: str, name: str, patch: dict[str, Any], kind_of_patch: str) -> dict[str, Any]:
        args = ("patch", kind, name, f"--type={kind_of_patch}", f"--field-manager={FIELD_MANAGER}", "-p")
        return dict(self.call(*args, json.dumps(patch)))


@dataclass
class Switch:
    """What a switch did (or would do): the endpoints before and after, and the rollout's outcome."""

    before: Endpoints
    after: Endpoints
    deployment: str
    restarted: bool = False
    rollout: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "before": self.before.as_data(),
            "after": self.after.as_data(),
            "deployment": self.deployment,
            "restarted": self.restarted,
            "rollout": self.rollout,
        }


def wait_rollout(
    kube: Kube, deployment: str, clock: Clock, timeout: float, get: Callable[[], dict[str, Any]] | None = None
) -> str:
    """Poll the Deployment until its rollout is complete (KubeError after `timeout` s), telling each new state."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        done, why = rollout_done(get() if get else kube.get("deployment", deployment))
        if done:
            return why
        if why != said:
            clock.say(f"rollout of {deployment}: {why}")
            said = why
        if time.monotonic() > deadline:
            raise KubeError(f"rollout of {deployment} not complete within {timeout:.0f} s: {why}")
        time.sleep(0.5)


def move_application(
    stack: str,
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    dry_run: bool,
    project_dir: Path,
    timeout: float = ROLLOUT_TIMEOUT_S,
) -> Switch | None:
    """Move `stack`'s application to the backup Kafka cluster: offsets, endpoints, restart, rollout (see above)."""
    settings = settings_for(stack, project_dir)
    app = settings.application
    namespace = app.namespace or settings.kubernetes.namespace
    kube = Kube(settings.kubernetes.context, namespace)
    backup = clusters(settings, outputs)["backup"]
    with clock.step(f"read ConfigMap {app.endpoints_config_map} in {namespace}"):
        config = kube.get("configmap", app.endpoints_config_map)
    current = Endpoints.from_data(config.get("data") or {}, app.endpoints_config_map)
    moved = current.alias == backup.alias
    switch = Switch(
        current if not moved else current.switched(), current if moved else current.switched(), app.deployment
    )
    report.measured["application"] = switch.as_dict()
    if moved:
        report.check("offsets", True, f"skipped: {app.endpoints_config_map} already names {backup.alias}")
    else:
        restore_offsets(stack, outputs, report, clock, None, dry_run, project_dir)
        if not report.ok:
            report.check("application.endpoints", False, "not switched: the group's offsets did not move")
            return switch
    change = f"{BOOTSTRAP_KEY} {switch.before.bootstrap} ({switch.before.alias}) -> {switch.after.bootstrap} "
    change += f"({switch.after.alias})"
    if dry_run:
        report.check("application.endpoints", True, f"would set {change}")
        report.check("application.restart", True, f"would restart deployment {app.deployment} and wait for it")
        return switch
    if not moved:
        with clock.step(f"switch {app.endpoints_config_map} to {backup.alias}"):
            kube.patch("configmap", app.endpoints_config_map, {"data": switch.after.as_data()}, "merge")
    report.check("application.endpoints", True, ("already " if moved else "") + change)
    deployment = kube.get("deployment", app.deployment)
    annotations = deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
    if annotations.get(SWITCH_ANNOTATION) != backup.alias:
        with clock.step(f"restart deployment {app.deployment}"):
            kube.patch("deployment", app.deployment, restart_patch(datetime.now(UTC), backup.alias), "strategic")
        switch.restarted = True
    with clock.step(f"wait for the rollout of {app.deployment} (at most {timeout:.0f} s)"):
        switch.rollout = wait_rollout(kube, app.deployment, clock, timeout)
    report.check("application.rollout", True, switch.rollout)
    report.measured["application"] = switch.as_dict()
    return switch


def active_bootstrap(settings: Settings, outputs: StackOutputs) -> tuple[str, str]:
    """The cluster the stack's application consumes, as this side reaches it (the outputs' own or peer bootstrap),
    from the alias its endpoints ConfigMap names; and where that was read. Unreadable: this region's own cluster."""
    app = settings.application
    kube = Kube(settings.kubernetes.context, app.namespace or settings.kubernetes.namespace)
    try:
        data = kube.get("configmap", app.endpoints_config_map).get("data") or {}
        alias = Endpoints.from_data(data, app.endpoints_config_map).alias
    except KubeError as exc:
        return outputs.kafka_bootstrap, f"this region's cluster (endpoints unreadable: {exc})"
    if alias == cluster_alias(settings.peer_region):
        return outputs.peer_kafka_bootstrap, f"{app.endpoints_config_map} names {alias} (the peer's cluster)"
    return outputs.kafka_bootstrap, f"{app.endpoints_config_map} names {alias}"
