"""Backup storage as the program declares it for both stacks, plus the pure lifecycle rules."""

from __future__ import annotations

import json

import pytest

from components.lifecycle import audit_retention_days, lifecycle_rules
from components.storage import REPLICATION_TIME_MINUTES, peer_bucket_name
from drtopo import naming
from drtopo.settings import Retention, Tier
from evaluation.mock_program import ACCOUNT_ID, Evaluation, Registered

BUCKET = "aws:s3/bucket:Bucket"
KEY = "aws:kms/key:Key"
COMPONENT = "drtopo:storage:BackupStorage"


def part(ev: Evaluation, kind: str, purpose: str) -> Registered:
    return ev.one(f"aws:s3/{kind[0].lower()}{kind[1:]}:{kind}", f"backups-{purpose}")


def storage_key(ev: Evaluation) -> Registered:
    return ev.one(KEY, "backups-key")


def peer_key_alias_arn(ev: Evaluation) -> str:
    """The peer stack's own backup key, by alias ARN (the mocked account)."""
    return f"arn:aws:kms:{ev.settings.peer_region}:{ACCOUNT_ID}:alias/drtopo-{ev.settings.peer_region}-backups"


def test_one_protected_bucket_per_purpose_named_by_region(stack: Evaluation) -> None:
    settings = stack.settings
    buckets = {r.name: r for r in stack.of_type(BUCKET)}
    assert set(buckets) == {f"backups-{p}" for p in naming.BUCKET_PURPOSES}
    component = stack.one(COMPONENT)
    for purpose in naming.BUCKET_PURPOSES:
        bucket = buckets[f"backups-{purpose}"]
        assert bucket.inputs["bucket"] == naming.bucket_name(settings, purpose) == f"drtopo-{settings.region}-{purpose}"
        assert bucket.protect
        assert bucket.parent_urn == component.urn
        assert not bucket.inputs.get("forceDestroy")


def test_the_key_rotates_is_protected_and_lives_in_this_region(stack: Evaluation) -> None:
    settings = stack.settings
    own = storage_key(stack)
    assert own.inputs["enableKeyRotation"] is True
    assert own.protect
    assert own.inputs["deletionWindowInDays"] == 30
    assert own.inputs.get("region") is None  # the stack's own region
    assert not [r.name for r in stack.of_type(KEY) if r.name.startswith("backups") and r is not own]
    aliases = {r.inputs["name"] for r in stack.of_type("aws:kms/alias:Alias")}
    assert f"alias/drtopo-{settings.region}-backups" in aliases


def test_replicas_use_the_key_the_peer_declares_in_its_region(prod: Evaluation, dr: Evaluation) -> None:
    for stack, peer in ((prod, dr), (dr, prod)):
        alias = peer.one("aws:kms/alias:Alias", "backups-key-alias").inputs["name"]
        assert peer_key_alias_arn(stack) == f"arn:aws:kms:{peer.settings.region}:{ACCOUNT_ID}:{alias}"
        assert stack.exports.get("kmsKeyArn") == storage_key(stack).outputs["arn"]


@pytest.mark.parametrize("purpose", naming.BUCKET_PURPOSES)
def test_bucket_is_versioned_private_and_kms_encrypted(stack: Evaluation, purpose: str) -> None:
    assert part(stack, "BucketVersioning", purpose).inputs["versioningConfiguration"] == {"status": "Enabled"}
    block = part(stack, "BucketPublicAccessBlock", purpose).inputs
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block[flag] is True, flag
    (rule,) = part(stack, "BucketServerSideEncryptionConfiguration", purpose).inputs["rules"]
    default = rule["applyServerSideEncryptionByDefault"]
    assert default["sseAlgorithm"] == "aws:kms"
    assert default["kmsMasterKeyId"] == storage_key(stack).outputs["arn"]
    assert rule["bucketKeyEnabled"] is True


@pytest.mark.parametrize("purpose", naming.BUCKET_PURPOSES)
def test_bucket_policy_denies_plain_http_and_unencrypted_uploads(stack: Evaluation, purpose: str) -> None:
    name = naming.bucket_name(stack.settings, purpose)
    statements = json.loads(part(stack, "BucketPolicy", purpose).inputs["policy"])["Statement"]
    assert all(s["Effect"] == "Deny" for s in statements)
    tls = next(s for s in statements if "aws:SecureTransport" in json.dumps(s["Condition"]))
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert tls["Action"] == "s3:*"
    assert set(tls["Resource"]) == {f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"}
    upload = next(s for s in statements if s["Action"] == "s3:PutObject")
    assert upload["Condition"] == {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}
    assert upload["Resource"] == f"arn:aws:s3:::{name}/*"


def test_dump_lifecycle_follows_the_retention_tiers(stack: Evaluation) -> None:
    retention = stack.settings.retention
    rules = {r["filter"]["prefix"]: r for r in part(stack, "BucketLifecycleConfiguration", "dumps").inputs["rules"]}
    assert set(rules) == {"daily/", "weekly/", "monthly/", "yearly/"}
    for name, tier in retention.tiers().items():
        rule = rules[f"{name}/"]
        assert rule["status"] == "Enabled"
        assert rule["expiration"]["days"] == tier.days
        assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == retention.daily.days
        if tier.cold_after_days is None:
            assert "transitions" not in rule
        else:
            assert rule["transitions"] == [{"days": tier.cold_after_days, "storageClass": tier.cold_storage_class}]
    assert rules["yearly/"]["transitions"][0]["storageClass"] == "DEEP_ARCHIVE"


def test_audit_bucket_is_object_locked_in_compliance_mode_for_the_audit_years(stack: Evaluation) -> None:
    years = stack.settings.retention.audit_years
    locked = {r.name for r in stack.of_type(BUCKET) if r.inputs.get("objectLockEnabled")}
    assert locked == {"backups-audit"}
    lock = part(stack, "BucketObjectLockConfiguration", "audit").inputs
    assert lock["objectLockEnabled"] == "Enabled"
    assert lock["rule"]["defaultRetention"] == {"mode": "COMPLIANCE", "years": years}
    (rule,) = part(stack, "BucketLifecycleConfiguration", "audit").inputs["rules"]
    assert rule["expiration"]["days"] >= years * 365 + years // 4


@pytest.mark.parametrize("purpose", naming.BUCKET_PURPOSES)
def test_replication_to_the_peer_bucket_with_rtc_and_delete_markers(stack: Evaluation, purpose: str) -> None:
    settings = stack.settings
    config = part(stack, "BucketReplicationConfig", purpose).inputs
    assert config["role"] == stack.one("aws:iam/role:Role", "backups-replication").outputs["arn"]
    (rule,) = config["rules"]
    assert rule["status"] == "Enabled"
    assert rule["deleteMarkerReplication"] == {"status": "Enabled"}
    assert rule["sourceSelectionCriteria"] == {"sseKmsEncryptedObjects": {"status": "Enabled"}}
    destination = rule["destination"]
    assert destination["bucket"] == f"arn:aws:s3:::drtopo-{settings.peer_region}-{purpose}"
    assert destination["bucket"] == f"arn:aws:s3:::{peer_bucket_name(settings, purpose)}"
    assert destination["encryptionConfiguration"] == {"replicaKmsKeyId": peer_key_alias_arn(stack)}
    assert destination["replicationTime"] == {"status": "Enabled", "time": {"minutes": 15}}
    assert destination["metrics"] == {"status": "Enabled", "eventThreshold": {"minutes": 15}}
    assert settings.objectives.region_failure.rpo_minutes >= REPLICATION_TIME_MINUTES


def test_replication_role_is_least_privilege(stack: Evaluation) -> None:
    settings = stack.settings
    trust = json.loads(stack.one("aws:iam/role:Role", "backups-replication").inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    statements = json.loads(stack.one("aws:iam/rolePolicy:RolePolicy", "backups-replication").inputs["policy"])[
        "Statement"
    ]
    assert all(s["Effect"] == "Allow" for s in statements)
    granted = {}
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        assert "*" not in resources and not any(a.endswith("*") for a in actions)
        # Only the peer's keys are named by pattern, narrowed to one alias by the statement's condition.
        assert all(not r.endswith("*") or r.endswith(":key/*") or r.endswith("/*") for r in resources)
        for action in actions:
            granted.setdefault(action, set()).update(resources)
    sources = {f"arn:aws:s3:::{naming.bucket_name(settings, p)}/*" for p in naming.BUCKET_PURPOSES}
    targets = {f"arn:aws:s3:::{peer_bucket_name(settings, p)}/*" for p in naming.BUCKET_PURPOSES}
    assert granted["s3:GetObjectVersionForReplication"] == sources
    assert granted["s3:ReplicateObject"] == granted["s3:ReplicateDelete"] == targets
    assert granted["kms:Decrypt"] == {storage_key(stack).outputs["arn"]}
    peer_keys = f"arn:aws:kms:{settings.peer_region}:{ACCOUNT_ID}:key/*"
    assert granted["kms:Encrypt"] == granted["kms:GenerateDataKey"] == {peer_keys}
    encrypt = next(s for s in statements if s.get("Sid") == "EncryptReplicas")
    assert encrypt["Condition"]["ForAnyValue:StringEquals"] == {
        "kms:ResourceAliases": f"alias/drtopo-{settings.peer_region}-backups"
    }
    assert encrypt["Condition"]["StringLike"] == {"kms:ViaService": f"s3.{settings.peer_region}.amazonaws.com"}
    assert not {"s3:PutObject", "s3:DeleteObject", "s3:DeleteBucket"} & set(granted)


def test_lifecycle_rules_are_computed_from_retention() -> None:
    retention = Retention(daily=Tier(days=10), monthly=Tier(days=400, cold_after_days=60, cold_storage_class="GLACIER"))
    dumps = {r["id"]: r for r in lifecycle_rules("dumps", retention)}
    assert dumps["daily-tier"]["expiration"] == {"days": 10}
    assert "transitions" not in dumps["daily-tier"]
    assert dumps["monthly-tier"]["transitions"] == [{"days": 60, "storage_class": "GLACIER"}]
    assert dumps["monthly-tier"]["noncurrent_version_expiration"] == {"noncurrent_days": 10}
    assert lifecycle_rules("config", retention) == lifecycle_rules("dumps", retention)
    (wal,) = lifecycle_rules("wal", Retention(operational_days=45))
    assert (wal["filter"], wal["expiration"]) == ({"prefix": ""}, {"days": 45})
    assert audit_retention_days(Retention(audit_years=7)) == 2557
    assert audit_retention_days(Retention(audit_years=1)) == 366
    with pytest.raises(ValueError, match="bucket purpose 'logs'"):
        lifecycle_rules("logs", retention)


def test_each_stack_replicates_into_the_buckets_its_peer_declares(prod: Evaluation, dr: Evaluation) -> None:
    for source, target in ((prod, dr), (dr, prod)):
        destinations = {
            rule["destination"]["bucket"]
            for config in source.of_type("aws:s3/bucketReplicationConfig:BucketReplicationConfig")
            for rule in config.inputs["rules"]
        }
        assert destinations == {f"arn:aws:s3:::{b.inputs['bucket']}" for b in target.of_type(BUCKET)}
        audit = next(b for b in target.of_type(BUCKET) if b.name == "backups-audit")
        assert audit.inputs["objectLockEnabled"] is True  # Object Lock replicas need a locked destination
