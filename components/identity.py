"""Workload identity for the backup jobs: one IAM role per job, assumable only by that job's Kubernetes
ServiceAccount through the cluster's OIDC issuer (IRSA), each with exactly what its job does.

IRSA: the ServiceAccount carries `eks.amazonaws.com/role-arn`; EKS's pod identity webhook gives the pod a projected
token that STS exchanges (AssumeRoleWithWebIdentity) for the role's credentials. The trust policy names the
cluster's OIDC provider (`arn:aws:iam::<account>:oidc-provider/<issuer>`) and pins both the token's audience
(`sts.amazonaws.com`) and its subject (`system:serviceaccount:<namespace>:<name>`), so no other pod can assume it.
The OIDC provider belongs to the cluster (created with it), so it is referenced by issuer, not declared here.

The policies name every action and resource: S3 object actions only under the job's prefixes of its bucket, the
stack's backup key only through S3 of this region, the database's master secret (by name, in this region: the
primary's own, or on a standby the replica of the peer's) only through Secrets Manager. Pure functions build the
documents; policies/rules/identity.py checks them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_aws import iam

from drtopo.tiers import TIERS

# What STS expects as the audience of a Kubernetes service-account token for IRSA.
IRSA_AUDIENCE = "sts.amazonaws.com"
# Secrets Manager appends "-" and six random characters to a secret's name in its ARN.
SECRET_ARN_SUFFIX = "-??????"


def oidc_provider_arn(account_id: str, issuer: str) -> str:
    """The IAM OIDC provider of a cluster: its issuer URL without the scheme."""
    return f"arn:aws:iam::{account_id}:oidc-provider/{issuer_host(issuer)}"


def issuer_host(issuer: str) -> str:
    return issuer.removeprefix("https://").rstrip("/")


def trust_policy(account_id: str, issuer: str, namespace: str, service_account: str) -> str:
    """Only this ServiceAccount's projected token, with STS as audience, may assume the role."""
    host = issuer_host(issuer)
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn(account_id, issuer)},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                            f"{host}:aud": IRSA_AUDIENCE,
                        }
                    },
                }
            ],
        }
    )


def secret_arn(region: str, account_id: str, name: str) -> str:
    """A secret by name in `region` (its ARN ends in a random six-character suffix, matched by `??????`)."""
    return f"arn:aws:secretsmanager:{region}:{account_id}:secret:{name}{SECRET_ARN_SUFFIX}"


def _key_statement(sid: str, actions: Sequence[str], key_arn: str, service: str, region: str) -> dict:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": list(actions),
        "Resource": key_arn,
        "Condition": {"StringEquals": {"kms:ViaService": f"{service}.{region}.amazonaws.com"}},
    }


def dump_policy(
    region: str, bucket: str, backup_key_arn: str, secret: str, database_key_arn: str, tiers: Sequence[str] = TIERS
) -> str:
    """The dump job: write, copy and read dumps under the tier prefixes of the dump bucket (copying between tiers
    reads one and writes another), list that bucket, use the backup key through S3, and read the master secret."""
    bucket_arn = f"arn:aws:s3:::{bucket}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ListDumps", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket_arn},
                {
                    "Sid": "WriteAndReadDumps",
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                    "Resource": [f"{bucket_arn}/{tier}/*" for tier in tiers],
                },
                _key_statement(
                    "BackupKeyThroughS3", ["kms:GenerateDataKey", "kms:Decrypt"], backup_key_arn, "s3", region
                ),
                {
                    "Sid": "ReadMasterSecret",
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                    "Resource": secret,
                },
                _key_statement(
                    "SecretKeyThroughSecretsManager", ["kms:Decrypt"], database_key_arn, "secretsmanager", region
                ),
            ],
        }
    )


def export_policy(region: str, bucket: str, prefix: str, backup_key_arn: str) -> str:
    """The configuration export: write (and read back) under its stack's prefix of the config bucket, with the
    backup key through S3; no database credentials."""
    prefix = prefix.rstrip("/") + "/"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "WriteConfiguration",
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                    "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
                },
                _key_statement(
                    "BackupKeyThroughS3", ["kms:GenerateDataKey", "kms:Decrypt"], backup_key_arn, "s3", region
                ),
            ],
        }
    )


@dataclass(frozen=True)
class WorkloadRoleArgs:
    """`policy` is the role's one inline policy document (JSON, an Output when it names ARNs)."""

    role_name: str
    account_id: pulumi.Input[str]
    issuer: str
    namespace: str
    service_account: str
    policy: pulumi.Input[str]


class WorkloadRole(pulumi.ComponentResource):
    """An IAM role assumable by one ServiceAccount through IRSA, with one inline least-privilege policy."""

    arn: pulumi.Output[str]

    def __init__(self, name: str, args: WorkloadRoleArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("drtopo:identity:WorkloadRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = iam.Role(
            name,
            name=args.role_name,
            assume_role_policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: trust_policy(account, args.issuer, args.namespace, args.service_account)
            ),
            max_session_duration=3600,
            opts=child,
        )
        iam.RolePolicy(name, role=role.id, policy=args.policy, opts=child)
        self.arn = role.arn
        self.register_outputs({"arn": role.arn})
