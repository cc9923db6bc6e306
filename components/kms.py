"""A customer-managed KMS key with rotation on and an alias: the one way drtopo encrypts data at rest.

Keys are stateful (losing one loses every object encrypted with it), so the key is protected. A key may live in
another region than the stack (replicas, copied backups) through pulumi-aws 7's per-resource `region`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
from pulumi_aws import get_caller_identity_output, kms

# KMS waits this long before deleting a scheduled key; the maximum, so a mistaken deletion can be cancelled.
DELETION_WINDOW_DAYS = 30


@dataclass(frozen=True)
class EncryptionKeyArgs:
    """`alias` without the `alias/` prefix; `region` None means the stack's region; `service_principals` may use
    the key to encrypt for a service (e.g. CloudWatch publishing to an encrypted SNS topic)."""

    description: str
    alias: str
    region: str | None = None
    service_principals: tuple[str, ...] = field(default=())
    # Tagged `drtopo:purpose`: the policy pack tells a key that AWS requires in another region by it.
    purpose: str | None = None


def key_policy(account_id: str, service_principals: tuple[str, ...]) -> str:
    """The account administers the key through IAM; the listed services may only encrypt and decrypt with it."""
    statements: list[dict] = [
        {
            "Sid": "AccountAdministersThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if service_principals:
        statements.append(
            {
                "Sid": "ServicesEncrypt",
                "Effect": "Allow",
                "Principal": {"Service": list(service_principals)},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


class EncryptionKey(pulumi.ComponentResource):
    """kms.Key (rotation on, protected) + kms.Alias."""

    key: kms.Key
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: EncryptionKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:kms:EncryptionKey", name, None, opts)
        policy = (
            get_caller_identity_output().account_id.apply(lambda account: key_policy(account, args.service_principals))
            if args.service_principals
            else None
        )
        self.key = kms.Key(
            name,
            description=args.description,
            enable_key_rotation=True,
            deletion_window_in_days=DELETION_WINDOW_DAYS,
            policy=policy,
            region=args.region,
            tags={"drtopo:purpose": args.purpose} if args.purpose else None,
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.alias = kms.Alias(
            f"{name}-alias",
            name=f"alias/{args.alias}",
            target_key_id=self.key.key_id,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = self.key.arn
        self.register_outputs({"arn": self.key.arn, "alias": self.alias.name})
