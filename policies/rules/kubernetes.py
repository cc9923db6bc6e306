"""Kubernetes manifest rules: no plaintext secrets, CronJobs that cannot pile up, bounded non-root containers, and
every object written through this stack's own cluster provider (never the ambient kubeconfig context)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from drtopo.settings import Settings
from policies import resource_types as types
from policies.model import Enforcement, Resource, Violation, as_list, number, truthy, violation
from policies.registry import resource_rule, stack_rule
from policies.view import StackView

# Names of secret material (not of a Secret object: `databaseSecret` names one, `dbPasswordSecretArn` points at one).
SECRET_MATERIAL = r"pass(word|wd)|pwd|token|api[-_]?key|private[-_]?key|secret[-_]?(access[-_]?)?key|client[-_]?secret"
REFERENCE_SUFFIX = re.compile(r"(arn|name|ref|id|file|path|secret)$", re.IGNORECASE)
SECRET_NAME = re.compile(SECRET_MATERIAL, re.IGNORECASE)
# `password=...`, `"token": "..."` inside a config text; `${...}` placeholders are references, not values.
SECRET_IN_TEXT = re.compile(
    rf"""(?P<key>[\w.-]*({SECRET_MATERIAL})[\w.-]*)["']?\s*[=:]\s*["']?(?P<value>(?!\$\{{)[^\s"',;]{{4,}})""",
    re.IGNORECASE,
)


def names_secret_material(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not REFERENCE_SUFFIX.search(name)


def secret_in_text(text: str) -> str | None:
    """The key of the first literal secret in a config text, or None."""
    for match in SECRET_IN_TEXT.finditer(text):
        if names_secret_material(match.group("key")) and not match.group("value").startswith("arn:"):
            return match.group("key")
    return None


CRONJOBS = (types.K8S_CRONJOB,)


def pod_spec(workload: Resource) -> dict[str, Any]:
    spec = workload.get(types.POD_SPEC_PATHS[workload.type])
    return spec if isinstance(spec, dict) else {}


def containers(workload: Resource) -> list[tuple[str, dict[str, Any]]]:
    """(property path, container) for every container and init container of the workload."""
    base = types.POD_SPEC_PATHS[workload.type]
    spec = pod_spec(workload)
    found = []
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(as_list(spec.get(kind))):
            if isinstance(container, dict):
                found.append((f"{base}.{kind}[{i}]", container))
    return found


@resource_rule(
    "k8s-no-plaintext-secrets",
    "Kubernetes manifests hold no literal passwords or keys: env values come from Secrets (valueFrom).",
    (*types.WORKLOADS, types.K8S_CONFIGMAP),
)
def no_plaintext_secrets(resource: Resource, settings: Settings) -> Iterator[Violation]:
    if resource.type == types.K8S_CONFIGMAP:
        for key, text in (resource.get("data") or {}).items():
            inner = secret_in_text(str(text))
            if names_secret_material(key) or inner:
                found = f"{inner}=***" if inner else "***"
                yield violation(resource, f"data.{key}", found, "no secret material in a ConfigMap (use a Secret)")
        return
    for path, container in containers(resource):
        for i, env in enumerate(as_list(container.get("env"))):
            name = str(env.get("name", ""))
            if names_secret_material(name) and env.get("value"):
                yield violation(
                    resource, f"{path}.env[{i}] ({name})", "***", "valueFrom.secretKeyRef, not a literal value"
                )


@resource_rule("k8s-cronjob-forbid-concurrency", "Backup CronJobs never run two at once.", CRONJOBS)
def cronjob_forbids_concurrency(job: Resource, settings: Settings) -> Iterator[Violation]:
    policy = job.get("spec.concurrencyPolicy")
    if policy != "Forbid":
        yield violation(job, "spec.concurrencyPolicy", policy, "'Forbid'")


@resource_rule("k8s-cronjob-deadlines", "CronJobs have a start deadline and a run deadline.", CRONJOBS)
def cronjob_deadlines(job: Resource, settings: Settings) -> Iterator[Violation]:
    for path in ("spec.startingDeadlineSeconds", "spec.jobTemplate.spec.activeDeadlineSeconds"):
        value = number(job.get(path))
        if value is None or value <= 0:
            yield violation(job, path, job.get(path), "a positive number of seconds")


@resource_rule("k8s-cronjob-history-limits", "CronJobs keep a bounded job history.", CRONJOBS, Enforcement.ADVISORY)
def cronjob_history_limits(job: Resource, settings: Settings) -> Iterator[Violation]:
    for path in ("spec.successfulJobsHistoryLimit", "spec.failedJobsHistoryLimit"):
        if number(job.get(path)) is None:
            yield violation(job, path, None, "an explicit limit")


@resource_rule("k8s-container-limits", "Every container declares CPU and memory limits.", types.WORKLOADS)
def container_limits(workload: Resource, settings: Settings) -> Iterator[Violation]:
    for path, container in containers(workload):
        limits = (container.get("resources") or {}).get("limits") or {}
        for resource_name in ("cpu", "memory"):
            if not limits.get(resource_name):
                yield violation(workload, f"{path}.resources.limits.{resource_name}", None, "a limit")


def _runs_as_non_root(context: dict[str, Any]) -> bool | None:
    """True/False when the security context decides, None when it says nothing."""
    if "runAsNonRoot" in context:
        return truthy(context["runAsNonRoot"])
    user = number(context.get("runAsUser"))
    return None if user is None else user > 0


@resource_rule("k8s-non-root", "Every container runs as a non-root user.", types.WORKLOADS)
def non_root(workload: Resource, settings: Settings) -> Iterator[Violation]:
    pod_level = _runs_as_non_root(pod_spec(workload).get("securityContext") or {})
    for path, container in containers(workload):
        own = _runs_as_non_root(container.get("securityContext") or {})
        decided = own if own is not None else pod_level
        if not decided:
            yield violation(workload, f"{path}.securityContext.runAsNonRoot", own, "true (here or on the pod)")


@stack_rule(
    "k8s-stack-provider",
    "Every Kubernetes object goes through this stack's own provider (its drtopo:kubernetes.context), never the "
    "ambient kubeconfig context.",
)
def stack_provider(view: StackView) -> Iterator[Violation]:
    context = view.settings.kubernetes.context
    own = {p.urn for p in view.of_type(types.K8S_PROVIDER) if p.get("context") == context}
    for resource in view.resources:
        if resource.type.startswith("kubernetes:") and resource.provider not in own:
            found = resource.provider or "the ambient default provider"
            yield violation(resource, "provider", found, f"a kubernetes provider with context {context!r}")
