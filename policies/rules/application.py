"""The application's DR state: a replica count for the stack's role, and pilot light only where the region-failure
RTO leaves room to start the application.

The start time is `drtopo:application.startSeconds` from settings: the drill does not yet start the application
(promote's application step is later work), so no drill report holds a measured figure to use instead. The rest of
the budget is what the readiness estimate models for a failover (drtopo.readiness.estimate): detection by the health
check, the operator's decision, the DNS TTL.
"""

from __future__ import annotations

from collections.abc import Iterator

from drtopo.readiness.estimate import modelled_rto_parts
from drtopo.settings import Settings
from policies import resource_types as types
from policies.model import Resource, Violation, number, violation
from policies.registry import stack_rule
from policies.view import StackView


def replica_patch(view: StackView) -> Resource | None:
    """The program's replica patch of the application's Deployment, or None."""
    name = view.settings.application.deployment
    return next((p for p in view.of_type(types.K8S_DEPLOYMENT_PATCH) if p.get("metadata.name") == name), None)


def pilot_light_budget(settings: Settings) -> tuple[float, str]:
    """Seconds a pilot-light failover needs before the application serves, and how they add up (pure)."""
    parts = [(p.name, p.seconds or 0.0) for p in modelled_rto_parts(settings)]
    parts.append(("application start (drtopo:application.startSeconds)", settings.application.start_seconds))
    total = sum(seconds for _, seconds in parts)
    return total, " + ".join(f"{name} {seconds:g} s" for name, seconds in parts)


@stack_rule(
    "pilot-light-within-rto",
    "The application's replicas follow the role (a primary runs some); pilot light (no standby replicas) is chosen "
    "only where the region-failure RTO leaves room for detection, the decision, DNS and starting the application.",
)
def pilot_light_within_rto(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    app = settings.application
    patch = replica_patch(view)
    if patch is None:
        yield violation(
            None,
            f"DeploymentPatch of {app.deployment}",
            None,
            "the application's replica patch (components/application.py)",
        )
        return
    replicas = number(patch.get("spec.replicas"))
    if settings.is_primary and not replicas:
        yield violation(patch, "spec.replicas", patch.get("spec.replicas"), f"{app.primary_replicas}", "a primary")
    pilot_light = app.pilot_light or (not settings.is_primary and replicas == 0)
    rto = settings.objectives.region_failure.rto_seconds
    budget, parts = pilot_light_budget(settings)
    if pilot_light and budget > rto:
        yield violation(
            patch,
            "standby replicas",
            0,
            f">= 1 (warm standby), or a region-failure RTO of at least {budget:g} s",
            f"{parts} = {budget:g} s exceeds the region-failure RTO of {rto:g} s",
        )
