"""The namespace's persistent volumes, snapshotted with the backup tiers: an AWS Backup vault in this region
(encrypted with its own customer key, protected), a plan with one rule per tier copying to the peer region's vault,
and a selection of the EBS volumes the CSI driver tagged with the namespace (drtopo/volumes.py: the rules and their
sources). Both stacks declare theirs, so each region's vault receives the other's copies."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
from pulumi_aws import backup, get_caller_identity_output, iam

from components.kms import EncryptionKey, EncryptionKeyArgs
from drtopo.settings import Settings
from drtopo.volumes import PVC_NAMESPACE_TAG, plan_rules, vault_name

# AWS's managed policy for AWS Backup's service role: snapshot and copy what a selection names.
BACKUP_SERVICE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"


@dataclass(frozen=True)
class VolumeBackupsArgs:
    settings: Settings


class VolumeBackups(pulumi.ComponentResource):
    """backup.Vault (protected, KMS) + backup.Plan (a rule per tier, copied to the peer) + backup.Selection."""

    def __init__(self, name: str, args: VolumeBackupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:volumes:VolumeBackups", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        key = EncryptionKey(
            f"{name}-key",
            EncryptionKeyArgs(
                description=f"drtopo volume backups in {settings.region}", alias=f"drtopo-{settings.region}-volumes"
            ),
            child,
        )
        self.vault = backup.Vault(
            f"{name}-vault",
            name=vault_name(settings.region),
            kms_key_arn=key.arn,
            force_destroy=False,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        account = get_caller_identity_output().account_id
        self.plan = backup.Plan(
            f"{name}-plan",
            name=f"drtopo-{settings.stack}-volumes",
            rules=account.apply(lambda a: plan_rules(settings, a)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.vault]),
        )
        assume = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "backup.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = iam.Role(f"{name}-role", assume_role_policy=json.dumps(assume), opts=child)
        iam.RolePolicyAttachment(f"{name}-role-policy", role=role.name, policy_arn=BACKUP_SERVICE_POLICY, opts=child)
        backup.Selection(
            f"{name}-selection",
            name=f"drtopo-{settings.stack}-namespace-volumes",
            plan_id=self.plan.id,
            iam_role_arn=role.arn,
            resources=["arn:aws:ec2:*:*:volume/*"],
            selection_tags=[{"type": "STRINGEQUALS", "key": PVC_NAMESPACE_TAG, "value": settings.kubernetes.namespace}],
            opts=child,
        )
        self.register_outputs({"vault": self.vault.name, "plan": self.plan.id})
