"""The namespace's persistent volumes are snapshotted with every backup tier and copied to the peer region: an AWS
Backup plan whose rules keep each tier as long as the retention settings say and copy it to a vault in the peer
region, an encrypted vault, and a selection of the namespace's EBS volumes by the CSI driver's tag
(drtopo/volumes.py holds the rules relied on and their sources)."""

from __future__ import annotations

from collections.abc import Iterator

from drtopo.tiers import TIERS
from drtopo.volumes import PVC_NAMESPACE_TAG
from policies import resource_types as types
from policies.model import Violation, as_list, number, violation
from policies.registry import stack_rule
from policies.view import StackView


def _kept(rule: dict, days: int) -> bool:
    return (number((rule.get("lifecycle") or {}).get("deleteAfter")) or 0) >= days


@stack_rule(
    "volume-backups-every-tier-copied",
    "An AWS Backup plan snapshots the namespace's EBS volumes (selected by the CSI driver's namespace tag) into an "
    "encrypted vault, keeps each retention tier as long as the settings say, and copies it to the peer region.",
)
def volume_backups(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    plans = view.of_type(types.BACKUP_PLAN)
    if not plans:
        yield violation(None, "backup.Plan of the namespace's volumes", None, "declared")
        return
    rules = [r for plan in plans for r in as_list(plan.get("rules")) if isinstance(r, dict)]
    peer = f":backup:{settings.peer_region}:"
    for tier in TIERS:
        days = getattr(settings.retention, tier).days
        # A tier's rule is named for it (drtopo/volumes.py plan_rules): a longer tier's rule runs too seldom for it.
        named = [r for r in rules if str(r.get("ruleName") or "").startswith(tier)]
        kept = [r for r in named if _kept(r, days)]
        if not kept:
            found = [(r.get("lifecycle") or {}).get("deleteAfter") for r in named] or None
            yield violation(plans[0], f"rules[{tier}].lifecycle.deleteAfter", found, f">= {days} (retention.{tier})")
            continue
        copies = [c for r in kept for c in as_list(r.get("copyActions")) if isinstance(c, dict)]
        if not any(peer in str(c.get("destinationVaultArn") or "") and _kept(c, days) for c in copies):
            yield violation(
                plans[0],
                f"rules[{tier}].copyActions",
                [c.get("destinationVaultArn") for c in copies] or None,
                f"a vault in {settings.peer_region} keeping it >= {days} days",
                "the tier's snapshots would go down with the region",
            )
    for vault in view.of_type(types.BACKUP_VAULT):
        if not vault.get("kmsKeyArn"):
            yield violation(vault, "kmsKeyArn", None, "a customer-managed key")
    namespace = settings.kubernetes.namespace
    selected = [
        s
        for s in view.of_type(types.BACKUP_SELECTION)
        if any(
            isinstance(t, dict) and t.get("key") == PVC_NAMESPACE_TAG and t.get("value") == namespace
            for t in as_list(s.get("selectionTags"))
        )
    ]
    if not selected:
        yield violation(
            None, "backup.Selection", None, f"volumes tagged {PVC_NAMESPACE_TAG}={namespace}", "the namespace's claims"
        )
