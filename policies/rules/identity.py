"""Credentials usable in the standby region during a primary-region loss, and least privilege for the backup jobs.

- The database's master secret is this stack's own, protected, and replicated to the peer region (Secrets Manager
  `replicas`, https://docs.aws.amazon.com/secretsmanager/latest/userguide/replicate-secrets.html): the surviving
  region reads it while the other is gone. No RDS-managed password: RDS does not create a read replica of a source
  whose master password Secrets Manager manages (RDS User Guide, "Limitations for Secrets Manager integration").
- A backup job's IAM role (IRSA) trusts only its ServiceAccount's token (sub and aud pinned with StringEquals,
  https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html) and names every action and
  resource: no `*` action or resource, S3 objects only under a prefix of this stack's own buckets, KMS only through a
  service of this region, the master secret only in this region. Credentials in region: a job in us-west-2 must not
  depend on us-east-1 to read its password or keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from drtopo import naming
from drtopo.fencing.store import GUARD_NAME
from drtopo.readiness import schedule
from drtopo.settings import Settings
from policies import resource_types as types
from policies.model import UNKNOWN, Resource, Violation, as_list, violation
from policies.registry import resource_rule, stack_rule
from policies.view import StackView

WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"
READINESS_ACCOUNT = schedule.JOB
SECRET_SUFFIX = "-??????"


def _document(resource: Resource, prop: str) -> dict[str, Any] | None:
    raw = resource.get(prop)
    if raw is None or raw is UNKNOWN:
        return None
    try:
        document = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def is_workload_role(role: Resource) -> bool:
    document = _document(role, "assumeRolePolicy") or {}
    return any(WEB_IDENTITY in as_list(s.get("Action")) for s in as_list(document.get("Statement")))


def trusted_subjects(role: Resource) -> list[str]:
    """The ServiceAccounts (`system:serviceaccount:<ns>:<name>`) a workload role's trust pins."""
    document = _document(role, "assumeRolePolicy") or {}
    return [
        str(value)
        for statement in _statements(document)
        for key, value in (((statement.get("Condition") or {}).get("StringEquals")) or {}).items()
        if key.endswith(":sub")
    ]


def is_readiness_role(role: Resource) -> bool:
    """The readiness check's role: readiness-role-least-privilege (policies/rules/readiness.py) judges its policy."""
    return any(subject.endswith(f":{READINESS_ACCOUNT}") for subject in trusted_subjects(role))


@resource_rule(
    "db-master-secret-replicated",
    "The database's master secret is replicated to the peer region (and protected), so the standby region can read "
    "it while the primary region is gone; RDS-managed master passwords are not used.",
    (types.SECRET, types.RDS_INSTANCE),
)
def master_secret_replicated(resource: Resource, settings: Settings) -> Iterator[Violation]:
    if resource.type == types.RDS_INSTANCE:
        if resource.get("manageMasterUserPassword"):
            yield violation(
                resource,
                "manageMasterUserPassword",
                True,
                "not set (the program's own replicated secret)",
                "RDS creates no read replica of a source whose password Secrets Manager manages",
            )
        return
    if resource.get("name") != naming.db_secret_name(settings.region):
        return
    regions = [r.get("region") for r in as_list(resource.get("replicas")) if isinstance(r, dict)]
    if settings.peer_region not in regions:
        yield violation(resource, "replicas[*].region", regions or None, repr(settings.peer_region))
    for replica in as_list(resource.get("replicas")):
        if isinstance(replica, dict) and not replica.get("kmsKeyId"):
            yield violation(resource, "replicas[*].kmsKeyId", None, "a customer-managed key in the replica's region")
    if not resource.get("kmsKeyId"):
        yield violation(resource, "kmsKeyId", None, "the database key")


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in as_list(document.get("Statement")) if isinstance(s, dict)]


# For the rules of other concerns that read IAM documents (policies/rules/fencing.py).
policy_document = _document
statements = _statements


def guard_roles(view: StackView, service_account: str) -> list[Resource]:
    """The workload roles that only `service_account` of the stack's namespace may assume."""
    subject = f"system:serviceaccount:{view.settings.kubernetes.namespace}:{service_account}"
    found = []
    for role in (r for r in view.of_type(types.IAM_ROLE) if is_workload_role(r)):
        trust = _document(role, "assumeRolePolicy") or {}
        for statement in _statements(trust):
            equals = (statement.get("Condition") or {}).get("StringEquals") or {}
            if [v for k, v in equals.items() if k.endswith(":sub")] == [subject]:
                found.append(role)
                break
    return found


def _allowed_resource(settings: Settings, action: str, arn: str) -> str | None:
    """Why `arn` is too wide (or outside the stack's region) for `action`; None when it is fine."""
    if arn == "*" or arn.endswith(":*"):
        return "a named resource"
    service = action.split(":", 1)[0]
    if service == "s3":
        own = {f"arn:aws:s3:::{naming.bucket_name(settings, p)}" for p in naming.BUCKET_PURPOSES}
        bucket, _, key = arn.removeprefix("arn:aws:s3:::").partition("/")
        if f"arn:aws:s3:::{bucket}" not in own:
            return f"one of this stack's buckets ({', '.join(sorted(own))})"
        if key in ("*", "") and action != "s3:ListBucket":
            return "objects under a prefix of the bucket (`<bucket>/<prefix>/*`), not the whole bucket"
        if "*" in key.removesuffix("/*"):
            return "a literal prefix"
        return None
    if service == "kms":
        if not arn.startswith(f"arn:aws:kms:{settings.region}:") or "*" in arn:
            return f"a key ARN in {settings.region}"
        return None
    if service == "secretsmanager":
        expected = f"secret:{naming.db_secret_name(settings.region)}"
        peer = f"secret:{naming.db_secret_name(settings.peer_region)}"
        prefix = f"arn:aws:secretsmanager:{settings.region}:"
        name = arn.split(":", 6)[-1] if arn.startswith(prefix) else ""
        if not arn.startswith(prefix) or f"secret:{name}" not in {
            f"{expected}{SECRET_SUFFIX}",
            f"{peer}{SECRET_SUFFIX}",
        }:
            return f"the database master secret in {settings.region} (name + {SECRET_SUFFIX!r})"
        return None
    return "an action of S3, KMS or Secrets Manager"


@stack_rule(
    "iam-job-roles-least-privilege",
    "Each backup job's IAM role is assumable only by its ServiceAccount (IRSA, sub and aud pinned) and allows only "
    "named actions on this stack's own resources in its own region: no wildcard action or resource.",
)
def job_roles_least_privilege(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    # The lease guard's role crosses regions for the lease only: policies/rules/fencing.py judges it.
    guards = {r.urn or r.name for r in guard_roles(view, GUARD_NAME)}
    for role in (r for r in view.of_type(types.IAM_ROLE) if is_workload_role(r)):
        if (role.urn or role.name) in guards:
            continue
        trust = _document(role, "assumeRolePolicy") or {}
        for statement in _statements(trust):
            equals = (statement.get("Condition") or {}).get("StringEquals") or {}
            subs = [v for k, v in equals.items() if k.endswith(":sub")]
            auds = [v for k, v in equals.items() if k.endswith(":aud")]
            namespace = settings.kubernetes.namespace
            if len(subs) != 1 or not str(subs[0]).startswith(f"system:serviceaccount:{namespace}:"):
                yield violation(
                    role,
                    "assumeRolePolicy.Condition.StringEquals.<issuer>:sub",
                    subs or None,
                    f"exactly one ServiceAccount of namespace {namespace!r}",
                )
            if auds != ["sts.amazonaws.com"]:
                yield violation(
                    role, "assumeRolePolicy.Condition.StringEquals.<issuer>:aud", auds or None, "['sts.amazonaws.com']"
                )
        if is_readiness_role(role):
            continue  # its policy reads the primary's region too: readiness-role-least-privilege judges it
        policies = view.companions(role, types.IAM_ROLE_POLICY, "role")
        if not policies:
            yield violation(role, "RolePolicy", None, "one inline policy naming what the job does")
        for policy in policies:
            document = _document(policy, "policy")
            if document is None:
                continue
            for statement in _statements(document):
                if statement.get("Effect") != "Allow":
                    continue
                actions = [str(a) for a in as_list(statement.get("Action"))]
                if statement.get("NotAction") or statement.get("NotResource"):
                    yield violation(policy, "Statement.NotAction/NotResource", True, "Action and Resource lists")
                for action in actions:
                    if "*" in action or "?" in action:
                        yield violation(policy, "Statement.Action", action, "named actions, no wildcard")
                for arn in (str(r) for r in as_list(statement.get("Resource"))):
                    for action in actions:
                        why = _allowed_resource(settings, action, arn)
                        if why is not None:
                            yield violation(policy, f"Statement[{statement.get('Sid', '')}].Resource", arn, why)
                            break
                via = ((statement.get("Condition") or {}).get("StringEquals") or {}).get("kms:ViaService")
                if any(a.startswith("kms:") for a in actions) and not str(via or "").endswith(
                    f".{settings.region}.amazonaws.com"
                ):
                    yield violation(
                        policy,
                        f"Statement[{statement.get('Sid', '')}].Condition.kms:ViaService",
                        via,
                        f"a service of {settings.region} (credentials in region)",
                    )


@stack_rule(
    "k8s-job-credentials-through-workload-identity",
    "With an OIDC issuer configured, each backup job's ServiceAccount is bound to its own declared role and no job "
    "reads the static Kubernetes Secret.",
)
def job_credentials_through_workload_identity(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    if settings.kubernetes.oidc_issuer is None:
        return
    roles = [r for r in view.of_type(types.IAM_ROLE) if is_workload_role(r)]
    trusted = {json.dumps(_document(r, "assumeRolePolicy")) for r in roles}
    job_accounts = {
        job.get(f"{types.POD_SPEC_PATHS[types.K8S_CRONJOB]}.serviceAccountName")
        for job in view.of_type(types.K8S_CRONJOB)
    }
    for account in view.of_type(types.K8S_SERVICE_ACCOUNT):
        if account.get("metadata.name") not in job_accounts:
            continue
        subject = f"system:serviceaccount:{settings.kubernetes.namespace}:{account.get('metadata.name')}"
        annotation = (account.get("metadata.annotations") or {}).get("eks.amazonaws.com/role-arn")
        if not any(subject in document for document in trusted):
            yield violation(account, "IAM role", None, f"a declared role whose trust names {subject}")
        if not annotation:
            yield violation(
                account,
                "metadata.annotations.eks.amazonaws.com/role-arn",
                annotation,
                "the ARN of the role declared for this ServiceAccount",
            )
    for job in view.of_type(types.K8S_CRONJOB):
        text = json.dumps(job.inputs)
        if "secretKeyRef" in text:
            yield violation(
                job,
                "containers[*].env[*].valueFrom.secretKeyRef",
                "set",
                "no Kubernetes Secret (the job reads the master secret with its role)",
            )
