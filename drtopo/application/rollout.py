"""When a Deployment has rolled out: kubectl's rule, as a pure function over the object the API returns.

kubectl's `rollout status` (k8s.io/kubectl pkg/polymorphichelpers/rollout_status.go, DeploymentStatusViewer.Status)
judges a Deployment done only once the controller has observed the latest spec (`metadata.generation <=
status.observedGeneration`), then in this order: a `Progressing` condition with reason `ProgressDeadlineExceeded` is
an error; fewer `updatedReplicas` than `spec.replicas`, old replicas still counted (`replicas > updatedReplicas`) or
fewer `availableReplicas` than `updatedReplicas` mean waiting; otherwise it has rolled out. The same rule here, so a
scale-up counts as done exactly when kubectl would say "successfully rolled out" (a scale to 0 is done when no
replica is left).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The Progressing condition's reason once spec.progressDeadlineSeconds has passed (k8s.io/kubectl util/deployment).
TIMED_OUT_REASON = "ProgressDeadlineExceeded"


class RolloutFailed(RuntimeError):
    """The Deployment's controller gave up (its progress deadline passed): waiting longer changes nothing."""


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    message: str
    replicas: int  # spec.replicas (1 when unset, the API's default)
    available: int


def rollout_status(deployment: dict[str, Any]) -> RolloutStatus:
    """kubectl's verdict on `deployment` (the API's JSON); raises RolloutFailed past its progress deadline (pure)."""
    metadata, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status", {})
    name = metadata.get("name", "?")
    wanted = int(spec.get("replicas", 1))
    updated, total = int(status.get("updatedReplicas", 0)), int(status.get("replicas", 0))
    available = int(status.get("availableReplicas", 0))

    def waiting(message: str) -> RolloutStatus:
        return RolloutStatus(False, message, wanted, available)

    if int(metadata.get("generation", 0)) > int(status.get("observedGeneration", 0)):
        return waiting(f"deployment {name!r}: waiting for the spec update to be observed")
    progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
    if progressing is not None and progressing.get("reason") == TIMED_OUT_REASON:
        raise RolloutFailed(f"deployment {name!r} exceeded its progress deadline: {progressing.get('message', '')}")
    if updated < wanted:
        return waiting(f"deployment {name!r}: {updated} out of {wanted} new replicas have been updated")
    if total > updated:
        return waiting(f"deployment {name!r}: {total - updated} old replicas are pending termination")
    if available < updated:
        return waiting(f"deployment {name!r}: {available} of {updated} updated replicas are available")
    done = f"deployment {name!r} successfully rolled out ({available}/{wanted} available)"
    return RolloutStatus(True, done, wanted, available)
