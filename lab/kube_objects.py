"""The Pulumi program's own Kubernetes objects, rendered from the program under mocks and applied to the lab cluster.

The program is evaluated exactly as the unit and policy tests evaluate it (policies/mock_program.py); each
`kubernetes:*` resource's inputs are already the object the provider would send (camelCase, apiVersion and kind).
The only lab changes: numbers that the mocks carry as floats become integers again, and every container gets
`imagePullPolicy: Never` (no registry is reachable; an image the lab has not built fails instead of being pulled).
Objects go in by server-side apply, as the provider does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drtopo.settings import Settings
from lab import kube
from policies.mock_program import evaluate

FIELD_MANAGER = "drtopo-lab"
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


def lab_object(inputs: dict[str, Any]) -> dict[str, Any]:
    """One resource's inputs as the lab applies them: integers restored, images never pulled (pure)."""
    document = integral(inputs)
    spec: Any = document
    for key in POD_SPEC_PATHS.get(document.get("kind", ""), ()):
        spec = spec.get(key, {}) if isinstance(spec, dict) else {}
    for field in ("initContainers", "containers"):
        for container in spec.get(field, []):
            container["imagePullPolicy"] = "Never"
    return document


def program_objects(settings: Settings) -> list[dict[str, Any]]:
    """Every Kubernetes object the program declares for `settings`' stack, in declaration order."""
    evaluation = evaluate(settings)
    return [lab_object(r.inputs) for r in evaluation.resources if r.custom and r.type.startswith("kubernetes:")]


def namespace_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def namespaces_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Namespace objects the namespaced ones need (the program's stack owns no Namespace of its own) (pure)."""
    names = sorted({o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")})
    return [namespace_object(name) for name in names]


def _server_side_apply(root: Path, objects: list[dict[str, Any]]) -> str:
    document = {"apiVersion": "v1", "kind": "List", "items": objects}
    args = ("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-")
    return kube.kubectl(root, *args, stdin=json.dumps(document), timeout=120).stdout


def apply(root: Path, objects: list[dict[str, Any]]) -> list[str]:
    """Server-side apply of the objects' namespaces, then the objects, to the lab cluster at `root`; returns
    kubectl's line per object."""
    output = _server_side_apply(root, namespaces_of(objects)) + _server_side_apply(root, objects)
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
