"""What the namespace's persistent volumes are backed up with (pure): an AWS Backup plan per stack with one rule per
retention tier, each recovery point copied to the peer region's vault, selecting the EBS volumes of the namespace by
the tag the EBS CSI driver writes.

Rules relied on, with their source:
- aws-ebs-csi-driver tags a volume it provisions `kubernetes.io/created-for/pvc/namespace=<namespace>` (and
  `.../pvc/name`, `.../pv/name`) when its external-provisioner sidecar runs with `--extra-create-metadata` (the
  driver's PVCNamespaceTag constant; the EKS add-on and the Helm chart turn it on), so a tag condition selects
  exactly the namespace's volumes, including the ones created after the plan.
- AWS Backup (Developer Guide, "Creating a backup plan", "Copy to another Region"): a rule's schedule is a
  `cron(...)` expression in UTC, `lifecycle.delete_after` is in days, and a copy action names the destination
  vault's ARN in the other region, where the copy is re-encrypted with that vault's key and kept by its own
  lifecycle.
- Neither moto nor the lab provisions EBS volumes or runs AWS Backup: the plan is declared and policy-checked only
  (README, "What the lab cannot show").
"""

from __future__ import annotations

from drtopo.settings import Settings

# The tag the EBS CSI driver writes on each volume it provisions for a claim: the claim's namespace.
PVC_NAMESPACE_TAG = "kubernetes.io/created-for/pvc/namespace"
# When each tier's rule runs (UTC, AWS Backup's cron with six fields); after the daily dump's window.
SCHEDULES = {
    "daily": "cron(0 3 * * ? *)",
    "weekly": "cron(0 3 ? * SUN *)",
    "monthly": "cron(0 3 1 * ? *)",
    "yearly": "cron(0 3 1 1 ? *)",
}


def vault_name(region: str) -> str:
    return f"drtopo-{region}-volumes"


def vault_arn(region: str, account: str) -> str:
    return f"arn:aws:backup:{region}:{account}:backup-vault:{vault_name(region)}"


def plan_rules(settings: Settings, account: str) -> list[dict[str, object]]:
    """One rule per retention tier, kept as long as the tier, copied to the peer region's vault (pure)."""
    rules: list[dict[str, object]] = []
    for tier, schedule in SCHEDULES.items():
        days = getattr(settings.retention, tier).days
        rules.append(
            {
                "rule_name": f"{tier}-volumes",
                "target_vault_name": vault_name(settings.region),
                "schedule": schedule,
                "lifecycle": {"delete_after": days},
                "copy_actions": [
                    {
                        "destination_vault_arn": vault_arn(settings.peer_region, account),
                        "lifecycle": {"delete_after": days},
                    }
                ],
            }
        )
    return rules
