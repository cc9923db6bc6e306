"""Backup-bucket rules: KMS encryption, versioning, public access blocked, TLS-only and encrypted-upload policy.

In pulumi-aws 7 each of these is a companion resource of the bucket, so these are stack rules: a bucket without
its companion is as much a violation as a companion with the wrong value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from policies import resource_types as types
from policies.model import Enforcement, Resource, Violation, as_list, truthy, violation
from policies.registry import stack_rule
from policies.view import StackView

KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _missing(bucket: Resource, companion: str, required: str) -> Violation:
    return violation(bucket, companion, None, required, f"no {companion} resource refers to this bucket")


@stack_rule("s3-bucket-kms-encrypted", "S3 buckets are encrypted by default with a customer-managed KMS key.")
def bucket_kms_encrypted(view: StackView) -> Iterator[Violation]:
    for bucket in view.of_type(types.BUCKET):
        configs = view.companions(bucket, types.BUCKET_SSE)
        if not configs:
            yield _missing(bucket, "BucketServerSideEncryptionConfiguration", "SSE-KMS with a customer key")
        for config in configs:
            rules = as_list(config.get("rules"))
            defaults = [r.get("applyServerSideEncryptionByDefault") or {} for r in rules]
            algorithms = [d.get("sseAlgorithm") for d in defaults]
            if not any(a in KMS_ALGORITHMS for a in algorithms):
                found = algorithms[0] if len(algorithms) == 1 else algorithms or None
                yield violation(config, "rules[*].applyServerSideEncryptionByDefault.sseAlgorithm", found, "'aws:kms'")
            elif not any(d.get("kmsMasterKeyId") for d in defaults if d.get("sseAlgorithm") in KMS_ALGORITHMS):
                yield violation(
                    config,
                    "rules[*].applyServerSideEncryptionByDefault.kmsMasterKeyId",
                    None,
                    "a customer-managed key ARN",
                    "without it S3 uses the AWS-managed key, which cannot be shared with the peer region",
                )


@stack_rule("s3-bucket-versioned", "S3 buckets keep every version, so an overwritten or deleted backup is recoverable.")
def bucket_versioned(view: StackView) -> Iterator[Violation]:
    for bucket in view.of_type(types.BUCKET):
        configs = view.companions(bucket, types.BUCKET_VERSIONING)
        if not configs:
            yield _missing(bucket, "BucketVersioning", "status 'Enabled'")
        for config in configs:
            status = config.get("versioningConfiguration.status")
            if status != "Enabled":
                yield violation(config, "versioningConfiguration.status", status, "'Enabled'")


@stack_rule("s3-public-access-blocked", "S3 buckets block every form of public access.")
def public_access_blocked(view: StackView) -> Iterator[Violation]:
    for bucket in view.of_type(types.BUCKET):
        blocks = view.companions(bucket, types.BUCKET_PUBLIC_ACCESS_BLOCK)
        if not blocks:
            yield _missing(bucket, "BucketPublicAccessBlock", "all four flags true")
        for block in blocks:
            for flag in PUBLIC_ACCESS_FLAGS:
                if not truthy(block.get(flag)):
                    yield violation(block, flag, block.get(flag), "true")


def policy_statements(policy: Any) -> list[dict[str, Any]]:
    """The statements of a bucket policy given as JSON text or as a dict."""
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except json.JSONDecodeError:
            return []
    return [s for s in as_list((policy or {}).get("Statement")) if isinstance(s, dict)]


def denies_insecure_transport(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition") or {}
    secure = (condition.get("Bool") or {}).get("aws:SecureTransport")
    return statement.get("Effect") == "Deny" and str(secure).lower() == "false"


def denies_unencrypted_uploads(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition") or {}
    actions = as_list(statement.get("Action"))
    header = "s3:x-amz-server-side-encryption"
    not_kms = (condition.get("StringNotEquals") or {}).get(header) in KMS_ALGORITHMS
    absent = str((condition.get("Null") or {}).get(header)).lower() == "true"
    puts = any(a in ("s3:PutObject", "s3:*", "*") for a in actions)
    return statement.get("Effect") == "Deny" and puts and (not_kms or absent)


def _bucket_policy_rule(view: StackView, test: Any, what: str, required: str) -> Iterator[Violation]:
    for bucket in view.of_type(types.BUCKET):
        policies = view.companions(bucket, types.BUCKET_POLICY)
        if not policies:
            yield _missing(bucket, "BucketPolicy", required)
        for policy in policies:
            if not any(test(s) for s in policy_statements(policy.get("policy"))):
                yield violation(policy, "policy.Statement", f"no statement that {what}", required)


@stack_rule("s3-tls-only", "S3 bucket policies deny any request not made over TLS.")
def tls_only(view: StackView) -> Iterator[Violation]:
    yield from _bucket_policy_rule(
        view, denies_insecure_transport, "denies insecure transport", "a Deny with Bool aws:SecureTransport = false"
    )


@stack_rule(
    "s3-encrypted-uploads-only",
    "S3 bucket policies deny uploads that do not ask for SSE-KMS.",
    Enforcement.ADVISORY,
)
def encrypted_uploads_only(view: StackView) -> Iterator[Violation]:
    yield from _bucket_policy_rule(
        view,
        denies_unencrypted_uploads,
        "denies unencrypted uploads",
        "a Deny of s3:PutObject when s3:x-amz-server-side-encryption is not aws:kms",
    )
