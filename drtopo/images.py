"""Where drtopo's container images come from: Amazon ECR in each stack's own region (pure).

A region that fails takes its registry with it: a standby whose MirrorMaker or backup jobs pull from the primary's
registry, or from a public one on the internet, may not start exactly when it must. So each stack's images name its
own region's ECR (`<account>.dkr.ecr.<region>.amazonaws.com/drtopo/<name>:<tag>`), the program declares the
repositories in both regions, and the primary's registry replicates them to the peer's (components/registry.py).

ECR rules relied on (Amazon ECR User Guide, "Private image replication" and "Replication backfill"): replication is
configured per registry and per source region (PutReplicationConfiguration), a destination is a region and a
registry id (the account, for cross-Region replication in one's own registry), repository filters match by name
prefix, and by default only images pushed after the configuration is applied are replicated (older ones need a
backfill): the repositories and the rule come before the first push.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drtopo.settings import Settings

# Every drtopo repository's name starts here; the replication rule filters on it.
REPOSITORY_PREFIX = "drtopo/"
_ECR = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z]{2}(-[a-z]+)+-\d)\.amazonaws\.com(\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?P<ref>[:@].+)?$"
)


@dataclass(frozen=True)
class EcrImage:
    account: str
    region: str
    repository: str


def ecr_image(image: str) -> EcrImage | None:
    """The registry an image reference names, when it is a private ECR registry; else None (public, other)."""
    match = _ECR.match(image)
    if match is None:
        return None
    return EcrImage(match["account"], match["region"], match["repository"])


def workload_images(settings: Settings) -> dict[str, str]:
    """The images drtopo's own workloads run, by what they are for."""
    return {"backup": settings.kubernetes.backup_image, "mirror-maker": settings.kubernetes.mirror_maker_image}


def registry_problem(image: str, region: str) -> str | None:
    """Why a workload of a stack in `region` must not run `image`, or None when it names that region's ECR."""
    found = ecr_image(image)
    if found is None:
        return "not a private ECR registry (a public or third-party one): out of the stack's hands in a region failure"
    if found.region != region:
        return f"another region's registry ({found.region}): it fails with that region"
    return None
