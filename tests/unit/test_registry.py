"""drtopo's images in two registries: each stack's workloads pull from its own region's ECR, the program declares
the repositories there (protected, immutable tags, scanned) and the primary's registry replicates them to the peer."""

from __future__ import annotations

import pytest

from drtopo.images import ecr_image, registry_problem, workload_images
from evaluation.mock_program import Evaluation

REPOSITORY = "aws:ecr/repository:Repository"
REPLICATION = "aws:ecr/replicationConfiguration:ReplicationConfiguration"
WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:CronJob")


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("123456789012.dkr.ecr.us-west-2.amazonaws.com/drtopo/kafka:3.9.1", None),
        ("123456789012.dkr.ecr.us-west-2.amazonaws.com/drtopo/backup@sha256:ab12", None),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/drtopo/kafka:3.9.1", "another region's registry (us-east-1)"),
        ("apache/kafka:3.9.1", "not a private ECR registry"),
        ("ghcr.io/biopro/drtopo-backup:1.0.0-pg15", "not a private ECR registry"),
        ("public.ecr.aws/drtopo/kafka:3.9.1", "not a private ECR registry"),
    ],
)
def test_an_image_is_fine_only_from_the_stacks_own_regions_ecr(image: str, problem: str | None) -> None:
    found = registry_problem(image, "us-west-2")
    assert found == problem if problem is None else problem in (found or "")


def test_an_ecr_reference_names_its_account_region_and_repository() -> None:
    found = ecr_image("123456789012.dkr.ecr.us-east-1.amazonaws.com/drtopo/backup:1.0.0-pg15")
    assert found is not None
    assert (found.account, found.region, found.repository) == ("123456789012", "us-east-1", "drtopo/backup")


def _images(ev: Evaluation) -> set[str]:
    found = set()
    for kind in WORKLOADS:
        for workload in ev.of_type(kind):
            spec = workload.inputs["spec"]
            pod = spec["jobTemplate"]["spec"]["template"]["spec"] if "jobTemplate" in spec else spec["template"]["spec"]
            found |= {c["image"] for c in [*pod.get("initContainers", []), *pod["containers"]]}
    return found


def test_each_stacks_workloads_pull_from_its_own_regions_registry(stack: Evaluation) -> None:
    images = _images(stack)
    assert images and all(registry_problem(i, stack.settings.region) is None for i in images), images


def test_both_stacks_declare_a_protected_repository_per_image(stack: Evaluation) -> None:
    repositories = {r.inputs["name"]: r for r in stack.of_type(REPOSITORY)}
    wanted = {ecr_image(i).repository for i in workload_images(stack.settings).values()}  # type: ignore[union-attr]
    assert set(repositories) == wanted == {"drtopo/backup", "drtopo/kafka"}
    for repository in repositories.values():
        assert repository.protect
        assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
        assert repository.inputs["imageScanningConfiguration"]["scanOnPush"] is True


def test_the_primarys_registry_replicates_drtopo_repositories_to_the_peer_region(
    prod: Evaluation, dr: Evaluation
) -> None:
    (rule,) = prod.one(REPLICATION).inputs["replicationConfiguration"]["rules"]
    assert [d["region"] for d in rule["destinations"]] == ["us-west-2"]
    assert rule["repositoryFilters"] == [{"filter": "drtopo/", "filterType": "PREFIX_MATCH"}]
    assert dr.of_type(REPLICATION) == []
