"""Evaluates the Pulumi program for a stack under Pulumi's mock runtime and turns what it registers into Resources.

No cloud account and no pulumi CLI: `evaluation.mock_program.evaluate` runs `components.topology.build_topology`
with mocks; the mocks give a resource the id `<logical name>-id`, which is how companions refer to buckets here.
"""

from __future__ import annotations

from drtopo.settings import Settings
from evaluation.mock_program import Evaluation, evaluate
from policies.model import Resource


def program_resources(settings: Settings) -> list[Resource]:
    """Every custom resource the program registers for `settings` (components themselves carry no inputs)."""
    return evaluated_resources(evaluate(settings))


def evaluated_resources(evaluation: Evaluation) -> list[Resource]:
    """The custom resources of an evaluation of the program, as the rules judge them (pure)."""
    return [
        Resource(
            type=r.type,
            name=r.name,
            inputs=r.inputs,
            urn=r.urn,
            parent_urn=r.parent_urn,
            protect=r.protect,
            id=f"{r.name}-id",
            # The engine's provider reference is `<provider urn>::<provider id>`.
            provider=r.provider.rsplit("::", 1)[0] if r.provider else "",
        )
        for r in evaluation.resources
        if r.custom
    ]
