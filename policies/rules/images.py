"""drtopo's images come from the stack's own region: every workload image names that region's ECR, each image has
its repository declared there, and the primary's registry replicates them to the peer region (drtopo/images.py
holds the ECR rules this relies on, with their source)."""

from __future__ import annotations

from collections.abc import Iterator

from drtopo.images import ecr_image, registry_problem, workload_images
from drtopo.settings import Settings
from policies import resource_types as types
from policies.model import Resource, Violation, as_list, violation
from policies.registry import resource_rule, stack_rule
from policies.rules.kubernetes import containers
from policies.view import StackView


@resource_rule(
    "workload-image-own-region",
    "Every container image of a workload comes from the stack's own region's ECR: never another region's registry "
    "(it fails with that region) nor a public one.",
    types.WORKLOADS,
)
def workload_image_own_region(resource: Resource, settings: Settings) -> Iterator[Violation]:
    for path, container in containers(resource):
        image = str(container.get("image") or "")
        problem = registry_problem(image, settings.region)
        if problem is not None:
            required = f"<account>.dkr.ecr.{settings.region}.amazonaws.com/<repository>"
            yield violation(resource, f"{path}.image", image, required, problem)


def _covers(rule: dict, repository: str, region: str) -> bool:
    """A replication rule copies `repository` to `region`: a destination there and a filter matching its name (a
    rule without filters matches every repository)."""
    regions = {d.get("region") for d in as_list(rule.get("destinations")) if isinstance(d, dict)}
    filters = [f for f in as_list(rule.get("repositoryFilters")) if isinstance(f, dict)]
    matched = not filters or any(
        f.get("filterType") == "PREFIX_MATCH" and repository.startswith(str(f.get("filter") or "")) for f in filters
    )
    return region in regions and matched


@stack_rule(
    "images-in-both-regions",
    "Each of drtopo's images has its ECR repository declared in the stack's region, and the primary's registry "
    "replicates it to the peer region.",
)
def images_in_both_regions(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    declared = {r.get("name") for r in view.of_type(types.ECR_REPOSITORY)}
    rules = [
        rule
        for config in view.of_type(types.ECR_REPLICATION)
        for rule in as_list(config.get("replicationConfiguration.rules"))
        if isinstance(rule, dict)
    ]
    for purpose, image in workload_images(settings).items():
        found = ecr_image(image)
        if found is None or found.region != settings.region:
            continue  # workload-image-own-region names it
        if found.repository not in declared:
            yield violation(None, f"ecr.Repository {found.repository}", None, "declared", f"the {purpose} image's")
        if settings.is_primary and not any(_covers(r, found.repository, settings.peer_region) for r in rules):
            yield violation(
                None,
                "ecr.ReplicationConfiguration",
                None,
                f"a rule replicating {found.repository} to {settings.peer_region}",
                f"without it the standby has no {purpose} image of its own",
            )
