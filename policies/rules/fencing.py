"""The primary lease as declared (drtopo:fencing.mode `lease`; nothing is checked with `off`):

- the primary runs exactly one guard (`python -m scripts.guard` for its own stack) and a standby none: a standby's
  guard would fence a replica, two guards of one stack would race each other;
- the stack that owns the witness (`fencing.witnessStack`) declares its bucket in the witness region, a third region
  (neither stack's), unreplicated: a copy of an older epoch landing on a newer one would make the epoch go back;
- each stack declares its own lease bucket in its own region, expiring noncurrent versions, and no lease store (its
  own, the peer's, the witness) is the source or the destination of any replication: S3 replication is
  asynchronous, so a late replica of an older epoch could become current over a newer one and the epoch go back
  (the configuration buckets replicate into each other, which is why the lease is not kept there);
- the guard's IAM role touches no object but the lease object of the three stores (`fencing/lease.json` in this
  stack's lease bucket, the peer's and the witness bucket), lists only those buckets and uses a key only through
  S3 of a store's region: the guard is the one workload whose credentials cross regions, and only for the lease;
- in its cluster, the guard's service account is bound only to Roles that `get` and `patch` the application's
  Deployment and its scale by name (`application.deployment`): what keeping the application at 0 while fenced
  takes, and nothing else (never a ClusterRole, never a rule without resourceNames).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from drtopo.fencing.lease import LEASE_KEY
from drtopo.fencing.store import GUARD_NAME, lease_bucket, witness_bucket
from drtopo.settings import PROJECT, FencingMode, Settings
from policies import resource_types as types
from policies.model import Resource, Violation, as_list, number, violation
from policies.registry import stack_rule
from policies.rules.identity import guard_roles, policy_document, statements
from policies.rules.kubernetes import containers
from policies.view import StackView

GUARD_MODULE = "scripts.guard"
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject")
BUCKET_ACTIONS = ("s3:ListBucket",)
KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
# What the guard may do to the application's Deployment in its cluster (components/guard.py).
APP_GROUPS = ("apps",)
APP_RESOURCES = ("deployments", "deployments/scale")
APP_VERBS = ("get", "patch")


def _lease_on(settings: Settings) -> bool:
    return settings.fencing.mode is FencingMode.LEASE


def is_guard(workload: Resource, stack: str) -> bool:
    """A workload whose container runs this stack's guard."""
    for _, container in containers(workload):
        command = [str(part) for part in as_list(container.get("command")) + as_list(container.get("args"))]
        if GUARD_MODULE in command and "--stack" in command:
            at = command.index("--stack")
            if at + 1 < len(command) and command[at + 1] == stack:
                return True
    return False


@stack_rule(
    "fencing-guard-follows-role",
    "With fencing.mode lease, the primary runs exactly one guard of its own stack (a Deployment of one replica) and a "
    "standby runs none.",
)
def guard_follows_role(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    if not _lease_on(settings):
        return
    guards = [d for d in view.of_type(types.K8S_DEPLOYMENT) if is_guard(d, settings.stack)]
    expected = 1 if settings.is_primary else 0
    if settings.is_primary and not guards:
        yield violation(
            None,
            "Deployment running python -m scripts.guard",
            None,
            f"one, for stack {settings.stack} (role primary, fencing.mode lease)",
            "without it a cut-off primary keeps taking writes",
        )
    for guard in guards:
        replicas = number(guard.get("spec.replicas"))
        if replicas != expected:
            yield violation(
                guard,
                "spec.replicas",
                guard.get("spec.replicas"),
                f"{expected} (stack {settings.stack} has role {settings.role.value})",
                "a standby's guard would fence its replica" if expected == 0 else "exactly one guard renews the lease",
            )


def _witness_buckets(view: StackView, bucket: str) -> list[Resource]:
    return [b for b in view.of_type(types.BUCKET) if b.get("bucket") == bucket]


@stack_rule(
    "fencing-witness-in-third-region",
    "With fencing.mode lease, the stack named by fencing.witnessStack declares the witness bucket in "
    "fencing.witnessRegion, a region neither stack runs in, and does not replicate it.",
)
def witness_in_third_region(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    fencing = settings.fencing
    if not _lease_on(settings) or fencing.witness_stack != settings.stack:
        return
    region = str(fencing.witness_region)
    physical = witness_bucket(PROJECT, region)
    found = _witness_buckets(view, physical)
    if not found:
        yield violation(None, f"Bucket {physical!r}", None, f"declared by {settings.stack} (fencing.witnessStack)")
    for bucket in found:
        where = bucket.get("region") or settings.region
        if where in (settings.region, settings.peer_region) or where != region:
            yield violation(
                bucket,
                "region",
                where,
                f"{region!r} (fencing.witnessRegion, neither {settings.region} nor {settings.peer_region})",
                "a witness in a stack's region is lost with that region, and the majority with it",
            )
        for replication in view.companions(bucket, types.BUCKET_REPLICATION):
            yield violation(
                replication,
                "bucket",
                physical,
                "no replication of the witness bucket",
                "a replicated older epoch would overwrite a newer one",
            )


def _store_regions(settings: Settings) -> dict[str, str]:
    """The lease's three buckets and their regions."""
    witness = str(settings.fencing.witness_region)
    return {
        lease_bucket(PROJECT, settings.region): settings.region,
        lease_bucket(PROJECT, settings.peer_region): settings.peer_region,
        witness_bucket(PROJECT, witness): witness,
    }


def _expires_noncurrent(lifecycles: list[Resource]) -> bool:
    return any(
        rule.get("status") == "Enabled" and (rule.get("noncurrentVersionExpiration") or {}).get("noncurrentDays")
        for lifecycle in lifecycles
        for rule in as_list(lifecycle.get("rules"))
    )


@stack_rule(
    "fencing-lease-stores-unreplicated",
    "With fencing.mode lease, the stack declares its own lease bucket in its own region, expiring noncurrent "
    "versions, and no lease store (its own, the peer's, the witness) is the source or destination of a replication.",
)
def lease_stores_unreplicated(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    if not _lease_on(settings):
        return
    own = lease_bucket(PROJECT, settings.region)
    stores = _store_regions(settings)
    found = [b for b in view.of_type(types.BUCKET) if b.get("bucket") == own]
    if not found:
        yield violation(
            None,
            f"Bucket {own!r}",
            None,
            f"declared by {settings.stack} in {settings.region} (fencing.mode lease)",
            "without it the lease has no store in this stack's region",
        )
    for bucket in found:
        where = bucket.get("region") or settings.region
        if where != settings.region:
            yield violation(
                bucket, "region", where, f"{settings.region!r} (the stack's own region)", "one store per region"
            )
        if not _expires_noncurrent(view.companions(bucket, types.BUCKET_LIFECYCLE)):
            yield violation(
                bucket,
                "lifecycle noncurrentVersionExpiration",
                None,
                "an enabled rule expiring noncurrent versions",
                "every renewal leaves a noncurrent version",
            )
    for bucket in (b for b in view.of_type(types.BUCKET) if b.get("bucket") in stores):
        for replication in view.companions(bucket, types.BUCKET_REPLICATION):
            yield violation(
                replication,
                "bucket",
                bucket.get("bucket"),
                "no replication of a lease store",
                "a replicated older epoch would overwrite a newer one",
            )
    for replication in view.of_type(types.BUCKET_REPLICATION):
        for i, rule in enumerate(as_list(replication.get("rules"))):
            target = str((rule.get("destination") or {}).get("bucket") or "").removeprefix("arn:aws:s3:::")
            if target in stores:
                yield violation(
                    replication,
                    f"rules[{i}].destination.bucket",
                    target,
                    "no replica written into a lease store",
                    "a replica of an older epoch could land on a newer one",
                )


def _why_not(settings: Settings, action: str, arn: str, statement: dict[str, Any]) -> str | None:
    """Why `action` on `arn` is more than the guard may do; None when it is its lease."""
    stores = _store_regions(settings)
    if action in OBJECT_ACTIONS:
        bucket, _, key = arn.removeprefix("arn:aws:s3:::").partition("/")
        if bucket in stores and key == LEASE_KEY:
            return None
        return f"the lease object ({LEASE_KEY}) of {', '.join(sorted(stores))}"
    if action in BUCKET_ACTIONS:
        if arn.removeprefix("arn:aws:s3:::") in stores:
            return None
        return f"one of the lease buckets {', '.join(sorted(stores))}"
    if action in KEY_ACTIONS:
        regions = set(stores.values())
        region = arn.split(":")[3] if arn.startswith("arn:aws:kms:") and arn.count(":") >= 5 else ""
        via = ((statement.get("Condition") or {}).get("StringEquals") or {}).get("kms:ViaService")
        if region in regions and via == f"s3.{region}.amazonaws.com":
            return None
        return f"a key of a store's region ({', '.join(sorted(regions))}) used only through S3 there (kms:ViaService)"
    return f"only {', '.join(OBJECT_ACTIONS + BUCKET_ACTIONS + KEY_ACTIONS)}"


@stack_rule(
    "fencing-guard-least-privilege",
    "The lease guard's IAM role reads and writes only the lease object of the three stores, lists only their "
    "buckets and uses only their keys through S3 in their regions.",
)
def guard_least_privilege(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    if not _lease_on(settings):
        return
    for role in guard_roles(view, GUARD_NAME):
        for policy in view.companions(role, types.IAM_ROLE_POLICY, "role"):
            document = policy_document(policy, "policy")
            if document is None:
                continue
            for statement in statements(document):
                if statement.get("Effect") != "Allow":
                    continue
                sid = statement.get("Sid", "")
                if statement.get("NotAction") or statement.get("NotResource"):
                    yield violation(policy, f"Statement[{sid}].NotAction/NotResource", True, "Action and Resource")
                for action in (str(a) for a in as_list(statement.get("Action"))):
                    for arn in (str(r) for r in as_list(statement.get("Resource"))):
                        why = _why_not(settings, action, arn, statement)
                        if why is not None:
                            yield violation(policy, f"Statement[{sid}] {action}", arn, why)


def _binds_the_guard(binding: Resource, namespace: str) -> bool:
    return any(
        subject.get("kind") == "ServiceAccount"
        and subject.get("name") == GUARD_NAME
        and subject.get("namespace", binding.get("metadata.namespace")) == namespace
        for subject in as_list(binding.get("subjects"))
        if isinstance(subject, dict)
    )


def _rule_beyond(rule: dict[str, Any], deployment: str) -> str | None:
    """What a Role rule grants beyond get/patch of the application's Deployment and its scale; None when nothing."""
    beyond = [
        f"{key} {sorted(set(map(str, as_list(rule.get(key)))) - set(allowed))}"
        for key, allowed in (("apiGroups", APP_GROUPS), ("resources", APP_RESOURCES), ("verbs", APP_VERBS))
        if set(map(str, as_list(rule.get(key)))) - set(allowed)
    ]
    if [str(n) for n in as_list(rule.get("resourceNames"))] != [deployment]:
        beyond.append(f"resourceNames {as_list(rule.get('resourceNames'))}")
    if rule.get("nonResourceURLs"):
        beyond.append("nonResourceURLs")
    return "; ".join(beyond) or None


@stack_rule(
    "fencing-guard-kubernetes-least-privilege",
    "The lease guard's service account is bound only to Roles that get and patch the application's Deployment "
    "and its scale, that Deployment by name (application.deployment).",
)
def guard_kubernetes_least_privilege(view: StackView) -> Iterator[Violation]:
    settings = view.settings
    if not _lease_on(settings):
        return
    deployment = settings.application.deployment
    required = f"get/patch of apps deployments and deployments/scale named [{deployment!r}] only"
    roles = {(r.get("metadata.namespace"), r.get("metadata.name")): r for r in view.of_type(types.K8S_ROLE)}
    for binding in view.of_type(types.K8S_ROLE_BINDING):
        if not _binds_the_guard(binding, settings.kubernetes.namespace):
            continue
        ref = binding.get("roleRef") or {}
        role = roles.get((binding.get("metadata.namespace"), ref.get("name")))
        if ref.get("kind") != "Role" or role is None:
            yield violation(
                binding, "roleRef", f"{ref.get('kind')} {ref.get('name')}", f"a Role of this stack granting {required}"
            )
            continue
        for i, rule in enumerate(as_list(role.get("rules"))):
            beyond = _rule_beyond(rule if isinstance(rule, dict) else {}, deployment)
            if beyond is not None:
                yield violation(role, f"rules[{i}]", beyond, required, "the guard only keeps the application at 0")
