"""The Pulumi program's own Kubernetes objects, rendered from the program under mocks and applied to the lab cluster.

The program is evaluated exactly as the unit and policy tests evaluate it (evaluation/mock_program.py); each
`kubernetes:*` resource's inputs are already the object the provider would send (camelCase, apiVersion and kind).
The only lab changes: numbers that the mocks carry as floats become integers again, and every container gets
`imagePullPolicy: Never` (no registry is reachable; an image the lab has not built fails instead of being pulled).
Run on the lab (a `PodView`), the lab's pods also see the lab, not the mocks: images are the local builds
(lab/images.py); MirrorMaker's ConfigMap holds `render_mm2_properties` with the lab's pod-side bootstrap addresses
(and the pod template the checksum of that text, as the program computes it); the backup ConfigMap holds the lab's
outputs and stack file, the readiness check's ConfigMap both stacks' outputs and stack files, the application's
endpoints ConfigMap the lab's database writer and Kafka; the backup jobs (every CronJob) get the emulator's endpoint
and its dummy credentials from a Secret, and PGSSLMODE=disable (the lab's PostgreSQL speaks no TLS; production keeps
verify-full).
Objects go in by server-side apply, as the provider does; a patch (the application's replica count, a
`DeploymentPatch`) after every whole object, under the field manager its annotation names, as the provider applies it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components import backup_jobs, guard, kafka_mirror
from drtopo.readiness import schedule
from drtopo.settings import Settings
from evaluation.mock_program import evaluate
from lab import kube

FIELD_MANAGER = "drtopo-lab"
# kubectl's validation for partial objects (drtopo.application.deployment: the same for promote's own patches).
PARTIAL_VALIDATION = "warn"
# The Kubernetes provider's annotation naming a patch resource's field manager.
PATCH_FIELD_MANAGER_ANNOTATION = "pulumi.com/patchFieldManager"
# Where containers sit in the kinds the program declares.
POD_SPEC_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def integral(value: Any) -> Any:
    """`value` with every float that is a whole number turned back into an int (the mocks carry 3 as 3.0) (pure)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


@dataclass(frozen=True)
class PodView:
    """What the lab's pods see in place of what the mocks say: local images, lab addresses, the emulator."""

    images: Mapping[str, str] = field(default_factory=dict)  # the program's image -> the lab's local build
    mm2_properties: str | None = None  # MirrorMaker's ConfigMap file
    backup_files: Mapping[str, str] = field(default_factory=dict)  # the backup ConfigMap's data
    readiness_files: Mapping[str, str] = field(default_factory=dict)  # the readiness check's ConfigMap's data
    job_env: tuple[dict[str, Any], ...] = ()  # added to (or replacing by name) every backup job container's env
    # The application's endpoints ConfigMap (by name): the lab's writer and Kafka as its pods reach them.
    app_endpoints: tuple[str, Mapping[str, str]] | None = None
    # The lease's guard (fencing.mode lease): its ConfigMap's data, and its container's env on top of the program's
    # (the emulator as each region's endpoint through the gates, its dummy credentials, no TLS to the lab's database).
    guard_files: Mapping[str, str] = field(default_factory=dict)
    guard_env: tuple[dict[str, Any], ...] = ()


def _pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec: Any = document
    for key in POD_SPEC_PATHS.get(document.get("kind", ""), ()):
        spec = spec.get(key, {}) if isinstance(spec, dict) else {}
    return spec if isinstance(spec, dict) else {}


def _containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(document)
    return [c for key in ("initContainers", "containers") for c in spec.get(key, [])]


def with_env(env: list[dict[str, Any]], extra: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """`env` with each of `extra` replacing the variable of its name, or appended (pure)."""
    names = {e["name"] for e in extra}
    return [e for e in env if e["name"] not in names] + [copy.deepcopy(e) for e in extra]


def lab_object(inputs: dict[str, Any], view: PodView | None = None) -> dict[str, Any]:
    """One resource's inputs as the lab applies them: integers restored, images never pulled, and with a view the
    lab's images, addresses and files (pure)."""
    document = integral(inputs)
    view = view or PodView()
    kind, name = document.get("kind"), document.get("metadata", {}).get("name")
    for container in _containers(document):
        container["imagePullPolicy"] = "Never"
        container["image"] = view.images.get(container["image"], container["image"])
    if kind == "ConfigMap" and name == kafka_mirror.NAME and view.mm2_properties is not None:
        document["data"] = {kafka_mirror.PROPERTIES_FILE: view.mm2_properties}
    if kind == "ConfigMap" and name == backup_jobs.CONFIG_MAP and view.backup_files:
        document["data"] = dict(view.backup_files)
    if kind == "ConfigMap" and name == schedule.CONFIG_MAP and view.readiness_files:
        document["data"] = dict(view.readiness_files)
    if kind == "CronJob" and name == schedule.JOB and view.readiness_files:
        # Run on demand only (`kubectl create job --from`): an hourly run would race a test's own publish.
        document["spec"]["suspend"] = True
    if kind == "ConfigMap" and view.app_endpoints is not None and name == view.app_endpoints[0]:
        document["data"] = {**document.get("data", {}), **view.app_endpoints[1]}
    if kind == "Deployment" and name == kafka_mirror.NAME and view.mm2_properties is not None:
        annotations = document["spec"]["template"]["metadata"].setdefault("annotations", {})
        annotations[kafka_mirror.CHECKSUM_ANNOTATION] = kafka_mirror.properties_checksum(view.mm2_properties)
    if kind == "ConfigMap" and name == guard.CONFIG_MAP and view.guard_files:
        document["data"] = dict(view.guard_files)
    if kind == "Deployment" and name == guard.GUARD and view.guard_env:
        for container in _containers(document):
            container["env"] = with_env(container.get("env", []), view.guard_env)
    if kind == "CronJob" and view.job_env:
        for container in _containers(document):
            container["env"] = with_env(container.get("env", []), view.job_env)
    return document


def is_patch(resource_type: str) -> bool:
    """A `kubernetes:*Patch` resource: a partial object of a resource someone else owns (pure)."""
    return resource_type.startswith("kubernetes:") and resource_type.endswith("Patch")


def program_objects(settings: Settings, view: PodView | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the program declares for `settings`' stack, in declaration order, its patches last.

    The application's replica patch (components/application.py) sets the lab stand-in's count for the stack's role:
    the standby's 0 (pilot light) until promote scales it up.
    """
    evaluation = evaluate(settings)
    resources = [r for r in evaluation.resources if r.custom and r.type.startswith("kubernetes:")]
    return [lab_object(r.inputs, view) for r in resources if not is_patch(r.type)] + [
        lab_object(r.inputs, view) for r in resources if is_patch(r.type)
    ]


def patch_manager(document: dict[str, Any]) -> str | None:
    """The field manager a patch document's annotation names, or None for a whole object (pure)."""
    return document.get("metadata", {}).get("annotations", {}).get(PATCH_FIELD_MANAGER_ANNOTATION)


def namespace_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def namespaces_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Namespace objects the namespaced ones need (the program's stack owns no Namespace of its own) (pure)."""
    names = sorted({o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")})
    return [namespace_object(name) for name in names]


def _server_side_apply(root: Path, objects: list[dict[str, Any]], manager: str = FIELD_MANAGER) -> str:
    if not objects:
        return ""
    document = {"apiVersion": "v1", "kind": "List", "items": objects}
    # --force-conflicts: the declaration wins over fields another manager set (`kubectl scale` in a drill), as
    # `pulumi up` makes it win.
    args = ("apply", "--server-side", "--force-conflicts", f"--field-manager={manager}", "-f", "-")
    if manager != FIELD_MANAGER:
        # A patch is a partial object: kubectl's client-side schema check (its fallback where it does not detect
        # the server's field validation) refuses it for lacking required fields; the server validates the merge.
        args = (*args, f"--validate={PARTIAL_VALIDATION}")
    return kube.kubectl(root, *args, stdin=json.dumps(document), timeout=120).stdout


def apply(root: Path, objects: list[dict[str, Any]]) -> list[str]:
    """Server-side apply of the objects' namespaces, then the whole objects, then the patches (each under its own
    field manager: the objects they patch must exist first), to the lab cluster at `root`; returns kubectl's line
    per object."""
    whole = [o for o in objects if patch_manager(o) is None]
    output = _server_side_apply(root, namespaces_of(whole)) + _server_side_apply(root, whole)
    managers = sorted({m for o in objects if (m := patch_manager(o)) is not None})
    for manager in managers:
        output += _server_side_apply(root, [o for o in objects if patch_manager(o) == manager], manager)
    return output.splitlines()


def can_i(
    root: Path, namespace: str, account: str, verb: str, resource: str, *, in_namespace: str | None = None
) -> bool:
    """`kubectl auth can-i VERB RESOURCE --as=system:serviceaccount:NAMESPACE:ACCOUNT` (in `in_namespace`, default
    the account's own): True for yes, False for no; anything else is an error."""
    proc = kube.kubectl(
        root,
        "auth",
        "can-i",
        verb,
        resource,
        "-n",
        in_namespace or namespace,
        f"--as=system:serviceaccount:{namespace}:{account}",
        check=False,
    )
    answer = proc.stdout.strip()
    if answer not in ("yes", "no"):
        raise kube.KubeError(f"kubectl auth can-i {verb} {resource} answered {answer!r}: {proc.stderr.strip()}")
    return answer == "yes"
