"""The primary lease as the program declares it, under Pulumi mocks: the guard's Deployment, ServiceAccount,
ConfigMap and IAM role in each stack, each stack's own unreplicated lease bucket, the witness bucket in the stack
that owns it, nothing with fencing off; the
mounted files load with the loaders `python -m scripts.guard` uses, and its role allows exactly what its stores do.
Also the guard's heartbeat and liveness probe command, and its Kubernetes rights: get and patch on the application's
Deployment and its scale, by name, in the application's namespace, nothing else."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from components.guard import guard_policy, lease_objects
from drtopo.application.deployment import KUBECTL_TIMEOUT_SECONDS
from drtopo.fencing.guard import ApplicationWriters, guard_for
from drtopo.fencing.heartbeat import beat
from drtopo.fencing.lease import LEASE_KEY
from drtopo.fencing.store import lease_bucket, lease_stores, witness_bucket
from drtopo.naming import BUCKET_PURPOSES
from drtopo.outputs import load_outputs, peer_outputs
from drtopo.settings import PROJECT, Settings, load_settings
from evaluation.mock_program import ACCOUNT_ID, Evaluation
from scripts import guard_alive
from tests.evaluations import evaluation_of
from tests.k8s_schema import validate_manifest

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
BUCKET = "aws:s3/bucket:Bucket"
WITNESS = "eu-west-1"
OIDC = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"


def lease_overrides(stack: str, role: str | None = None, oidc: bool = False, **fencing: Any) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "fencing": {"mode": "lease", "witnessRegion": WITNESS, "witnessStack": "prod", **fencing}
    }
    if role:
        overrides["role"] = role
    if oidc:
        kubernetes = load_settings(stack).kubernetes.model_dump(mode="json", by_alias=True, exclude_none=True)
        overrides["kubernetes"] = {**kubernetes, "oidcIssuer": OIDC}
    return overrides


@cache
def exported(stack: str) -> dict[str, Any]:
    """A stack's whole outputs document, as its StackReference answers it."""
    return dict(evaluation_of(load_settings(stack, overrides=lease_overrides(stack))).exports)


@cache
def program(stack: str, role: str | None = None, oidc: bool = False) -> Evaluation:
    settings = load_settings(stack, overrides=lease_overrides(stack, role, oidc))
    peer = settings.peer_stack
    return evaluation_of(settings, references={str(settings.primary_stack_reference): exported(peer)})


def guard(ev: Evaluation) -> dict[str, Any]:
    return ev.one(DEPLOYMENT, "lease-guard").inputs


def container(ev: Evaluation) -> dict[str, Any]:
    (only,) = guard(ev)["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_nothing_is_declared_with_fencing_off(stack: str) -> None:
    ev = evaluation_of(load_settings(stack))
    assert [r.name for r in ev.resources if "lease" in r.name or "guard" in r.name] == []


@pytest.mark.parametrize(("stack", "role"), [("prod", "primary"), ("prod", "standby"), ("dr", "primary")])
def test_one_guard_while_primary_none_while_standby(stack: str, role: str) -> None:
    ev = program(stack, role)
    spec = guard(ev)["spec"]
    assert spec["replicas"] == (1 if role == "primary" else 0)
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    component = ev.one("drtopo:fencing:LeaseGuard")
    for obj in (r for r in ev.resources if r.type.startswith("kubernetes:") and r.parent_urn == component.urn):
        validate_manifest(obj.inputs)
        assert obj.get("metadata.namespace") == ev.settings.kubernetes.namespace


def test_the_guard_runs_the_backup_image_locked_down_with_a_liveness_probe() -> None:
    ev = program("prod")
    settings = ev.settings
    spec = guard(ev)["spec"]["template"]["spec"]
    box = container(ev)
    assert box["image"] == settings.kubernetes.backup_image
    assert box["command"] == [
        *("python", "-m", "scripts.guard", "--stack", "prod", "--outputs", "/etc/drtopo/outputs.json"),
        *("--heartbeat", "/tmp/guard.beat"),
    ]
    assert spec["serviceAccountName"] == "drtopo-guard"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
    security = box["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert set(box["resources"]["limits"]) == {"cpu", "memory"}
    probe = box["livenessProbe"]
    assert probe["exec"]["command"] == ["python", "-m", "scripts.guard_alive", "/tmp/guard.beat", "30"]
    assert probe["periodSeconds"] == 5 and probe["initialDelaySeconds"] == 30


def test_the_database_password_comes_only_from_the_named_secret() -> None:
    ev = program("prod")
    env = {e["name"]: e for e in container(ev)["env"]}
    assert env["PGPASSWORD"] == {
        "name": "PGPASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "drtopo-guard-db", "key": "password"}},
    }
    assert all("value" not in e for name, e in env.items() if "PASS" in name or "SECRET" in name)


def mount(ev: Evaluation, into: Path) -> dict[str, str]:
    data = ev.one(CONFIG_MAP, "lease-guard-config").inputs["data"]
    for name, text in data.items():
        (into / name).write_text(text)
    return data


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_mounted_files_load_as_the_guard_reads_them(stack: str, tmp_path: Path) -> None:
    ev = program(stack)
    settings = ev.settings
    assert sorted(mount(ev, tmp_path)) == sorted(
        ["outputs.json", f"{settings.peer_stack}.json", f"Pulumi.{stack}.yaml"]
    )
    assert load_settings(stack, project_dir=tmp_path) == settings
    own = load_outputs(tmp_path / "outputs.json", stack)
    peer = peer_outputs(tmp_path / "outputs.json", settings.peer_stack)
    assert peer is not None and (peer.stack, peer.region) == (settings.peer_stack, settings.peer_region)
    # The guard connects as its own role and never reaches for the master secret.
    assert (own.db_user, own.db_password_secret_arn) == ("drtopo_guard", None)
    assert own.config_bucket == exported(stack)["configBucket"]
    stores = lease_stores(settings, own, peer, client_for=lambda region: None)
    assert [(s.bucket, s.region) for s in stores] == [
        (f"drtopo-lease-{settings.region}", settings.region),
        (f"drtopo-lease-{settings.peer_region}", settings.peer_region),
        (witness_bucket(PROJECT, WITNESS), WITNESS),
    ]
    # Each stack's store takes that stack's backup key, the one its bucket is encrypted with by default.
    assert [s.put_args["SSEKMSKeyId"] for s in stores[:2]] == [own.kms_key_arn, peer.kms_key_arn]


def statements(document: str) -> list[dict[str, Any]]:
    return json.loads(document)["Statement"]


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_the_role_allows_exactly_what_the_stores_do(stack: str, tmp_path: Path) -> None:
    ev = program(stack, oidc=True)
    settings = ev.settings
    role = ev.one("aws:iam/role:Role", "lease-guard-role")
    trust = statements(role.inputs["assumeRolePolicy"])[0]["Condition"]["StringEquals"]
    assert f"system:serviceaccount:{settings.kubernetes.namespace}:drtopo-guard" in trust.values()
    account = ev.one(SERVICE_ACCOUNT, "lease-guard-sa").inputs["metadata"]
    assert account["annotations"]["eks.amazonaws.com/role-arn"] == role.outputs["arn"]
    assert role.get("name") == f"drtopo-{settings.region}-lease-guard"
    policy = statements(ev.one("aws:iam/rolePolicy:RolePolicy", "lease-guard-role").inputs["policy"])
    objects = {arn for s in policy if "s3:GetObject" in s["Action"] for arn in s["Resource"]}
    mount(ev, tmp_path)
    own = load_outputs(tmp_path / "outputs.json", stack)
    peer = peer_outputs(tmp_path / "outputs.json", settings.peer_stack)
    assert peer is not None
    stores = lease_stores(settings, own, peer, client_for=lambda region: None)
    assert objects == {f"arn:aws:s3:::{s.bucket}/{s.key}" for s in stores}
    assert all(s.key == LEASE_KEY for s in stores)
    # Each store's write names its key's region; the role may use a key there, only through S3 there.
    key_regions = {
        s["Resource"].split(":")[3]: s["Condition"]["StringEquals"] for s in policy if "kms:Decrypt" in s["Action"]
    }
    for store in stores:
        region = store.put_args["SSEKMSKeyId"].split(":")[3]
        assert key_regions[region] == {"kms:ViaService": f"s3.{region}.amazonaws.com"}
    actions = {a for s in policy for a in s["Action"]}
    assert actions == {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "kms:GenerateDataKey", "kms:Decrypt"}


def test_guard_policy_names_no_object_but_the_lease() -> None:
    settings: Settings = load_settings("prod", overrides=lease_overrides("prod"))
    document = statements(guard_policy(settings, ACCOUNT_ID))
    resources = [arn for s in document if s["Action"] != ["s3:ListBucket"] for arn in s["Resource"] if "s3" in arn]
    assert sorted(resources) == sorted(lease_objects(settings))
    assert not any(arn.endswith("/*") for arn in resources)


def test_the_witness_is_declared_once_in_its_region_protected() -> None:
    prod, dr = program("prod"), program("dr")
    (bucket,) = [b for b in prod.of_type(BUCKET) if b.get("bucket") == witness_bucket(PROJECT, WITNESS)]
    assert (bucket.get("region"), bucket.protect) == (WITNESS, True)
    companions = [r for r in prod.resources if r.name == "lease-witness" and r.custom and r.type != BUCKET]
    assert {r.type.rsplit(":", 1)[-1] for r in companions} == {
        "BucketPublicAccessBlock",
        "BucketVersioning",
        "BucketServerSideEncryptionConfiguration",
        "BucketPolicy",
        "BucketLifecycleConfiguration",
    }
    lifecycle = next(r for r in companions if r.type.endswith("BucketLifecycleConfiguration"))
    assert lifecycle.get("rules.0.noncurrentVersionExpiration.noncurrentDays") == 30
    assert lifecycle.get("rules.0.expiration") is None  # the current lease never expires
    assert all(r.get("region") == WITNESS for r in companions)
    versioning = next(r for r in companions if r.type.endswith("BucketVersioning"))
    assert versioning.get("versioningConfiguration.status") == "Enabled"
    key = prod.one("aws:kms/key:Key", "lease-witness-key")
    assert (key.get("region"), key.get("tags"), key.protect) == (WITNESS, {"drtopo:purpose": "lease-witness"}, True)
    sse = next(r for r in companions if r.type.endswith("BucketServerSideEncryptionConfiguration"))
    assert sse.get("rules.0.applyServerSideEncryptionByDefault.kmsMasterKeyId") == key.outputs["arn"]
    assert [b for b in dr.of_type(BUCKET) if "witness" in str(b.get("bucket"))] == []


LEASE_STORE_COMPANIONS = {
    "BucketPublicAccessBlock",
    "BucketVersioning",
    "BucketServerSideEncryptionConfiguration",
    "BucketPolicy",
    "BucketLifecycleConfiguration",
}


@pytest.mark.parametrize(("stack", "role"), [("prod", None), ("dr", None), ("prod", "standby"), ("dr", "primary")])
def test_each_stack_declares_its_own_lease_bucket_in_its_region_whatever_its_role(stack: str, role: str | None) -> None:
    ev = program(stack, role)
    settings = ev.settings
    (bucket,) = [b for b in ev.of_type(BUCKET) if str(b.get("bucket")).startswith("drtopo-lease-us-")]
    assert (bucket.name, bucket.get("bucket")) == ("lease-store", lease_bucket(PROJECT, settings.region))
    assert (bucket.get("region"), bucket.protect) == (settings.region, True)
    assert bucket.get("tags") == {"drtopo:purpose": "lease", "drtopo:stack": stack}
    companions = [r for r in ev.resources if r.name == "lease-store" and r.custom and r.type != BUCKET]
    assert {r.type.rsplit(":", 1)[-1] for r in companions} == LEASE_STORE_COMPANIONS
    assert all(r.get("region") == settings.region for r in companions)
    by_kind = {r.type.rsplit(":", 1)[-1]: r for r in companions}
    assert by_kind["BucketVersioning"].get("versioningConfiguration.status") == "Enabled"
    lifecycle = by_kind["BucketLifecycleConfiguration"]
    assert lifecycle.get("rules.0.noncurrentVersionExpiration.noncurrentDays") == settings.retention.daily.days
    assert lifecycle.get("rules.0.expiration") is None  # the current lease never expires
    # Encrypted by default with the stack's backup key, the key its outputs export.
    sse = by_kind["BucketServerSideEncryptionConfiguration"]
    key = sse.get("rules.0.applyServerSideEncryptionByDefault.kmsMasterKeyId")
    assert key == ev.exports["kmsKeyArn"] and key == ev.one("aws:kms/key:Key", "backups-key").outputs["arn"]
    policy = json.loads(by_kind["BucketPolicy"].get("policy"))
    assert {s["Sid"] for s in policy["Statement"]} == {"DenyInsecureTransport", "DenyUnencryptedUploads"}
    block = by_kind["BucketPublicAccessBlock"]
    assert all(block.get(k) is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls"))


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_no_replication_reads_from_or_writes_into_a_lease_store(stack: str) -> None:
    ev = program(stack)
    settings = ev.settings
    stores = {lease_bucket(PROJECT, settings.region), lease_bucket(PROJECT, settings.peer_region)}
    stores.add(witness_bucket(PROJECT, WITNESS))
    assert lease_bucket(PROJECT, settings.region) in {b.get("bucket") for b in ev.of_type(BUCKET)}
    replications = ev.of_type("aws:s3/bucketReplicationConfig:BucketReplicationConfig")
    # The mocks give a bucket the id `<name>-id`: only the four backup buckets replicate, no lease store does.
    assert {r.get("bucket") for r in replications} == {f"backups-{purpose}-id" for purpose in BUCKET_PURPOSES}
    for replication in replications:
        targets = {rule["destination"]["bucket"].removeprefix("arn:aws:s3:::") for rule in replication.get("rules")}
        assert targets and not targets & stores


def test_the_witness_stays_with_its_stack_through_a_role_switch() -> None:
    switched = program("prod", "standby")
    assert switched.one(BUCKET, "lease-witness").get("region") == WITNESS


@pytest.mark.parametrize(("stack", "app_namespace"), [("prod", None), ("dr", None), ("prod", "collector")])
def test_the_guards_role_may_get_and_patch_the_applications_deployment_and_its_scale_only(
    stack: str, app_namespace: str | None
) -> None:
    overrides = lease_overrides(stack)
    if app_namespace:
        overrides["application"] = {"namespace": app_namespace}
    settings = load_settings(stack, overrides=overrides)
    ev = evaluation_of(settings, references={str(settings.primary_stack_reference): exported(settings.peer_stack)})
    namespace = settings.kubernetes.namespace
    where = app_namespace or namespace
    app = settings.application.deployment
    (role,) = [r for r in ev.of_type(ROLE) if r.get("metadata.name") == "drtopo-guard"]
    assert role.get("metadata.namespace") == where
    assert role.get("rules") == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "deployments/scale"],
            "verbs": ["get", "patch"],
            "resourceNames": [app],
        }
    ]
    (binding,) = [b for b in ev.of_type(ROLE_BINDING) if b.get("metadata.name") == "drtopo-guard"]
    assert binding.get("metadata.namespace") == where
    assert binding.get("roleRef") == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "drtopo-guard"}
    assert binding.get("subjects") == [{"kind": "ServiceAccount", "name": "drtopo-guard", "namespace": namespace}]
    validate_manifest(role.inputs)
    validate_manifest(binding.inputs)
    # No other Role or binding names the guard's account, and its token is mounted for its cluster's API.
    component = ev.one("drtopo:fencing:LeaseGuard")
    guard_kinds = sorted(r.type.rsplit(":", 1)[-1] for r in ev.resources if r.parent_urn == component.urn)
    assert guard_kinds.count("Role") == 1 and guard_kinds.count("RoleBinding") == 1
    others = [b for b in ev.of_type(ROLE_BINDING) if b is not binding]
    assert not [b for b in others for s in b.get("subjects") or [] if s.get("name") == "drtopo-guard"]
    assert ev.one(SERVICE_ACCOUNT, "lease-guard-sa").get("automountServiceAccountToken") is True
    assert "automountServiceAccountToken" not in guard(ev)["spec"]["template"]["spec"]


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_the_guard_keeps_down_exactly_the_deployment_its_role_names(stack: str, tmp_path: Path) -> None:
    """guard_for, from the mounted files, scales the Deployment the Role allows, in the Role's namespace."""
    ev = program(stack)
    settings = ev.settings
    mount(ev, tmp_path)
    own = load_outputs(tmp_path / "outputs.json", stack)
    peer = peer_outputs(tmp_path / "outputs.json", settings.peer_stack)
    assert peer is not None
    writers = guard_for(settings, own, peer).writers
    assert isinstance(writers, ApplicationWriters)
    assert writers.timeout < KUBECTL_TIMEOUT_SECONDS  # bounded, and tighter than promote's calls
    (role,) = [r for r in ev.of_type(ROLE) if r.get("metadata.name") == "drtopo-guard"]
    assert role.get("metadata.namespace") == writers.app.namespace
    assert role.get("rules.0.resourceNames") == [writers.app.deployment] == [settings.application.deployment]


def test_heartbeat_judged_by_the_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "guard.beat"
    assert guard_alive.main([str(path), "30"]) == 1
    assert "no heartbeat" in capsys.readouterr().err
    beat(path)
    assert guard_alive.main([str(path), "30"]) == 0
    old = path.stat().st_mtime - 60
    os.utime(path, (old, old))
    assert guard_alive.main([str(path), "30"]) == 1
    assert "beyond 30 s" in capsys.readouterr().err
    assert guard_alive.main([str(path), "0"]) == 2
