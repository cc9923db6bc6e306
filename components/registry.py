"""drtopo's container images in this stack's own region: an ECR repository per image, and on the primary the
registry's replication of every `drtopo/` repository to the peer region (drtopo/images.py says why and which ECR
rules this relies on).

Repositories are declared in both regions, so a replicated image lands in a repository this program owns (scanned,
immutable tags, encrypted), and the standby's workloads pull from their own region when the primary's is gone. The
replication rule is the primary's: after a failover the new primary's stack declares it toward the old region.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_aws import ecr, get_caller_identity_output

from drtopo.images import REPOSITORY_PREFIX, ecr_image, workload_images
from drtopo.settings import Settings


@dataclass(frozen=True)
class ImageRegistryArgs:
    settings: Settings


class ImageRegistry(pulumi.ComponentResource):
    """ecr.Repository per own-region image (protected), and ecr.ReplicationConfiguration on the primary."""

    repositories: dict[str, ecr.Repository]

    def __init__(self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:registry:ImageRegistry", name, None, opts)
        settings = args.settings
        self.repositories = {}
        for purpose, image in workload_images(settings).items():
            found = ecr_image(image)
            if found is None or found.region != settings.region or found.repository in self.repositories:
                continue  # the policy pack names an image from elsewhere (workload-image-own-region)
            self.repositories[found.repository] = ecr.Repository(
                f"{name}-{purpose}",
                name=found.repository,
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "KMS"}],
                force_delete=False,
                opts=pulumi.ResourceOptions(parent=self, protect=True),
            )
        self.replication = None
        if settings.is_primary:
            self.replication = ecr.ReplicationConfiguration(
                f"{name}-replication",
                replication_configuration={
                    "rules": [
                        {
                            "destinations": [
                                {"region": settings.peer_region, "registry_id": get_caller_identity_output().account_id}
                            ],
                            "repository_filters": [{"filter": REPOSITORY_PREFIX, "filter_type": "PREFIX_MATCH"}],
                        }
                    ]
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs(
            {"repositories": {repo: r.repository_url for repo, r in self.repositories.items()}},
        )
