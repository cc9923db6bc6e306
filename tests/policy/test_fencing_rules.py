"""The primary lease's rules over the program itself (evaluated under mocks with fencing.mode lease): the program
passes every rule in both stacks, both roles, with and without workload identity; each fencing rule fails, with a
message naming what is wrong, when its part is removed or weakened; the shipped stacks (fencing off) pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from drtopo.settings import Role, Settings, load_settings, stacks
from policies import resource_types as t
from policies.engine import evaluate_rules
from policies.model import Resource
from policies.registry import rule_named
from tests.evaluations import program_resources
from tests.policy.stacks import broken, res, without

WITNESS = "eu-west-1"
OIDC = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"
FENCING_RULES = (
    "fencing-guard-follows-role",
    "fencing-witness-in-third-region",
    "fencing-lease-stores-unreplicated",
    "fencing-guard-least-privilege",
    "fencing-guard-kubernetes-least-privilege",
)
GUARD_POD = "spec.template.spec"


def overrides(stack: str, role: str, oidc: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "role": role,
        "fencing": {"mode": "lease", "witnessRegion": WITNESS, "witnessStack": "prod"},
    }
    if oidc:
        kubernetes = load_settings(stack).kubernetes.model_dump(mode="json", by_alias=True, exclude_none=True)
        found["kubernetes"] = {**kubernetes, "oidcIssuer": OIDC}
    return found


@cache
def lease_program(stack: str, role: str = "primary", oidc: bool = True) -> tuple[Settings, tuple[Resource, ...]]:
    settings = load_settings(stack, overrides=overrides(stack, role, oidc))
    return settings, tuple(program_resources(settings))


@pytest.mark.parametrize("oidc", [False, True])
@pytest.mark.parametrize("role", [r.value for r in Role])
@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_the_program_with_the_lease_breaks_no_rule(stack: str, role: str, oidc: bool) -> None:
    settings, resources = lease_program(stack, role, oidc)
    guards = [r for r in resources if r.type == t.K8S_DEPLOYMENT and r.name == "lease-guard"]
    assert len(guards) == 1
    assert [v.message for v in evaluate_rules(resources, settings)] == []


@pytest.mark.parametrize("stack", stacks())
def test_the_shipped_stacks_have_the_lease_off_and_pass_the_fencing_rules(stack: str) -> None:
    settings = load_settings(stack)
    assert settings.fencing.mode == "off"
    rules = [rule_named(name) for name in FENCING_RULES]
    assert evaluate_rules(program_resources(settings), settings, rules) == []


def _policy_with(extra: dict[str, Any]) -> Callable[[list[Resource], Settings], list[Resource]]:
    def mutate(rs: list[Resource], s: Settings) -> list[Resource]:
        policy = next(r for r in rs if r.type == t.IAM_ROLE_POLICY and r.name == "lease-guard-role")
        document = json.loads(policy.inputs["policy"])
        document["Statement"].append({"Effect": "Allow", **extra})
        return broken(rs, t.IAM_ROLE_POLICY, "lease-guard-role", "policy", json.dumps(document))

    return mutate


def _witness_replicated(rs: list[Resource], s: Settings) -> list[Resource]:
    return [*rs, res(s, t.BUCKET_REPLICATION, "lease-witness-copy", {"bucket": "lease-witness-id", "rules": []})]


def _lease_store_replicated(rs: list[Resource], s: Settings) -> list[Resource]:
    return [*rs, res(s, t.BUCKET_REPLICATION, "lease-store-copy", {"bucket": "lease-store-id", "rules": []})]


def _config_replicated_into(store: str) -> Callable[[list[Resource], Settings], list[Resource]]:
    """The configuration bucket's replication pointed at a lease store (as if the lease still lived beside it)."""

    def mutate(rs: list[Resource], s: Settings) -> list[Resource]:
        config = next(r for r in rs if r.type == t.BUCKET_REPLICATION and r.name == "backups-config")
        rules = json.loads(json.dumps(config.inputs["rules"]))
        rules[0]["destination"]["bucket"] = f"arn:aws:s3:::{store}"
        return broken(rs, t.BUCKET_REPLICATION, "backups-config", "rules", rules)

    return mutate


def _lease_history_kept_forever(rs: list[Resource], s: Settings) -> list[Resource]:
    lifecycle = next(r for r in rs if r.type == t.BUCKET_LIFECYCLE and r.name == "lease-store")
    rules = [
        {k: v for k, v in rule.items() if k != "noncurrentVersionExpiration"} for rule in lifecycle.inputs["rules"]
    ]
    return broken(rs, t.BUCKET_LIFECYCLE, "lease-store", "rules", rules)


def _guard_rule(**change: Any) -> Callable[[list[Resource], Settings], list[Resource]]:
    """The guard's Role with its one rule changed (a key set to None is removed)."""

    def mutate(rs: list[Resource], s: Settings) -> list[Resource]:
        role = next(r for r in rs if r.type == t.K8S_ROLE and r.name == "lease-guard-app-role")
        (rule,) = json.loads(json.dumps(role.inputs["rules"]))
        rule.update(change)
        return broken(rs, t.K8S_ROLE, "lease-guard-app-role", "rules", [{k: v for k, v in rule.items() if v}])

    return mutate


def _guard_bound_to(kind: str, name: str) -> Callable[[list[Resource], Settings], list[Resource]]:
    def mutate(rs: list[Resource], s: Settings) -> list[Resource]:
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}
        return broken(rs, t.K8S_ROLE_BINDING, "lease-guard-app-binding", "roleRef", ref)

    return mutate


@dataclass(frozen=True)
class Case:
    rule: str
    id: str
    mutate: Callable[[list[Resource], Settings], list[Resource]]
    expect: str
    stack: str = "prod"
    role: str = "primary"


CASES = [
    Case(
        "fencing-guard-follows-role",
        "primary-without-guard",
        lambda rs, s: without(rs, t.K8S_DEPLOYMENT, "lease-guard"),
        "stack: Deployment running python -m scripts.guard = (not set); required one, for stack prod",
    ),
    Case(
        "fencing-guard-follows-role",
        "primary-guard-scaled-down",
        lambda rs, s: broken(rs, t.K8S_DEPLOYMENT, "lease-guard", "spec.replicas", 0),
        "Deployment 'lease-guard': spec.replicas = 0; required 1 (stack prod has role primary)",
    ),
    Case(
        "fencing-guard-follows-role",
        "two-guards",
        lambda rs, s: broken(rs, t.K8S_DEPLOYMENT, "lease-guard", "spec.replicas", 2),
        "spec.replicas = 2; required 1",
        stack="dr",
    ),
    Case(
        "fencing-guard-follows-role",
        "standby-guard-running",
        lambda rs, s: broken(rs, t.K8S_DEPLOYMENT, "lease-guard", "spec.replicas", 1),
        "Deployment 'lease-guard': spec.replicas = 1; required 0 (stack dr has role standby) (a standby's guard",
        stack="dr",
        role="standby",
    ),
    Case(
        "fencing-guard-follows-role",
        "guard-of-the-other-stack",
        lambda rs, s: broken(rs, t.K8S_DEPLOYMENT, "lease-guard", f"{GUARD_POD}.containers[0].command[4]", "dr"),
        "Deployment running python -m scripts.guard = (not set)",
    ),
    Case(
        "fencing-witness-in-third-region",
        "witness-missing",
        lambda rs, s: without(rs, t.BUCKET, "lease-witness"),
        "stack: Bucket 'drtopo-lease-witness-eu-west-1' = (not set); required declared by prod",
    ),
    Case(
        "fencing-witness-in-third-region",
        "witness-in-the-primary-region",
        lambda rs, s: broken(rs, t.BUCKET, "lease-witness", "region", "us-east-1"),
        "Bucket 'lease-witness': region = 'us-east-1'; required 'eu-west-1' (fencing.witnessRegion, neither",
    ),
    Case(
        "fencing-witness-in-third-region",
        "witness-in-the-provider-region",
        lambda rs, s: broken(rs, t.BUCKET, "lease-witness", "region", None),
        "Bucket 'lease-witness': region = 'us-east-1'",
    ),
    Case(
        "fencing-witness-in-third-region",
        "witness-replicated",
        _witness_replicated,
        "BucketReplicationConfig 'lease-witness-copy': bucket = 'drtopo-lease-witness-eu-west-1'; required no "
        "replication of the witness bucket",
    ),
    Case(
        "fencing-lease-stores-unreplicated",
        "lease-store-missing",
        lambda rs, s: without(rs, t.BUCKET, "lease-store"),
        "stack: Bucket 'drtopo-lease-us-east-1' = (not set); required declared by prod in us-east-1",
    ),
    Case(
        "fencing-lease-stores-unreplicated",
        "lease-store-in-the-peer-region",
        lambda rs, s: broken(rs, t.BUCKET, "lease-store", "region", "us-east-1"),
        "Bucket 'lease-store': region = 'us-east-1'; required 'us-west-2' (the stack's own region)",
        stack="dr",
        role="standby",
    ),
    Case(
        "fencing-lease-stores-unreplicated",
        "lease-store-replicated",
        _lease_store_replicated,
        "BucketReplicationConfig 'lease-store-copy': bucket = 'drtopo-lease-us-east-1'; required no replication of a "
        "lease store",
    ),
    Case(
        "fencing-lease-stores-unreplicated",
        "config-replicated-into-the-peer-lease-store",
        _config_replicated_into("drtopo-lease-us-west-2"),
        "BucketReplicationConfig 'backups-config': rules[0].destination.bucket = 'drtopo-lease-us-west-2'; required "
        "no replica written into a lease store",
    ),
    Case(
        "fencing-lease-stores-unreplicated",
        "config-replicated-into-the-witness",
        _config_replicated_into("drtopo-lease-witness-eu-west-1"),
        "rules[0].destination.bucket = 'drtopo-lease-witness-eu-west-1'",
        stack="dr",
    ),
    Case(
        "fencing-lease-stores-unreplicated",
        "lease-history-kept-forever",
        _lease_history_kept_forever,
        "Bucket 'lease-store': lifecycle noncurrentVersionExpiration = (not set); required an enabled rule expiring",
    ),
    Case(
        "fencing-guard-least-privilege",
        "the-config-bucket",
        _policy_with({"Action": "s3:PutObject", "Resource": "arn:aws:s3:::drtopo-us-east-1-config/fencing/lease.json"}),
        "s3:PutObject = 'arn:aws:s3:::drtopo-us-east-1-config/fencing/lease.json'; required the lease object "
        "(fencing/lease.json) of drtopo-lease-us-east-1, drtopo-lease-us-west-2, drtopo-lease-witness-eu-west-1",
    ),
    Case(
        "fencing-guard-least-privilege",
        "another-object",
        _policy_with({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::drtopo-us-east-1-config/config/*"}),
        "s3:GetObject = 'arn:aws:s3:::drtopo-us-east-1-config/config/*'; required the lease object "
        "(fencing/lease.json)",
    ),
    Case(
        "fencing-guard-least-privilege",
        "a-dump",
        _policy_with(
            {"Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::drtopo-us-east-1-dumps/fencing/lease.json"]}
        ),
        "'arn:aws:s3:::drtopo-us-east-1-dumps/fencing/lease.json'; required the lease object",
    ),
    Case(
        "fencing-guard-least-privilege",
        "delete",
        _policy_with(
            {"Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::drtopo-us-east-1-config/fencing/lease.json"}
        ),
        "s3:DeleteObject = 'arn:aws:s3:::drtopo-us-east-1-config/fencing/lease.json'; required only s3:GetObject",
    ),
    Case(
        "fencing-guard-least-privilege",
        "wildcard",
        _policy_with({"Action": "s3:*", "Resource": "*"}),
        "s3:* = '*'; required only",
    ),
    Case(
        "fencing-guard-least-privilege",
        "key-outside-the-stores",
        _policy_with(
            {
                "Action": "kms:Decrypt",
                "Resource": "arn:aws:kms:ap-south-1:123456789012:key/*",
                "Condition": {"StringEquals": {"kms:ViaService": "s3.ap-south-1.amazonaws.com"}},
            }
        ),
        "kms:Decrypt = 'arn:aws:kms:ap-south-1:123456789012:key/*'; required a key of a store's region",
    ),
    Case(
        "fencing-guard-least-privilege",
        "key-not-through-s3",
        _policy_with({"Action": "kms:Decrypt", "Resource": "arn:aws:kms:eu-west-1:123456789012:key/*"}),
        "used only through S3 there",
    ),
    Case(
        "fencing-guard-kubernetes-least-privilege",
        "any-deployment",
        _guard_rule(resourceNames=None),
        "Role 'lease-guard-app-role': rules[0] = 'resourceNames []'; required get/patch of apps deployments and "
        "deployments/scale named ['interface-exception-collector'] only",
    ),
    Case(
        "fencing-guard-kubernetes-least-privilege",
        "another-deployment",
        _guard_rule(resourceNames=["mirror-maker"]),
        "rules[0] = \"resourceNames ['mirror-maker']\"",
    ),
    Case(
        "fencing-guard-kubernetes-least-privilege",
        "delete-and-secrets",
        _guard_rule(verbs=["get", "patch", "delete"], resources=["deployments", "secrets"]),
        "rules[0] = \"resources ['secrets']; verbs ['delete']\"",
    ),
    Case(
        "fencing-guard-kubernetes-least-privilege",
        "a-cluster-role",
        _guard_bound_to("ClusterRole", "edit"),
        "RoleBinding 'lease-guard-app-binding': roleRef = 'ClusterRole edit'; required a Role of this stack",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.rule}:{c.id}")
def test_each_fencing_rule_fails_on_a_bad_stack(case: Case) -> None:
    settings, resources = lease_program(case.stack, case.role)
    rule = rule_named(case.rule)
    assert evaluate_rules(resources, settings, [rule]) == []
    found = evaluate_rules(case.mutate(list(resources), settings), settings, [rule])
    messages = [v.message for v in found]
    assert any(case.expect in m for m in messages), messages
    assert {v.rule for v in found} == {case.rule}


def test_every_fencing_rule_has_a_failing_case() -> None:
    assert {c.rule for c in CASES} == set(FENCING_RULES)


def test_the_backup_job_rule_still_judges_every_role_but_the_guards() -> None:
    settings, resources = lease_program("prod")
    mutate = _policy_with({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::elsewhere/x/*"})
    found = evaluate_rules(mutate(list(resources), settings), settings, [rule_named("iam-job-roles-least-privilege")])
    assert found == []
    dump = next(r for r in resources if r.type == t.IAM_ROLE_POLICY and r.name == "backup-jobs-pg-dump-role")
    document = json.loads(dump.inputs["policy"])
    document["Statement"].append(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::elsewhere/x/*"}
    )
    weakened = broken(list(resources), t.IAM_ROLE_POLICY, "backup-jobs-pg-dump-role", "policy", json.dumps(document))
    found = evaluate_rules(weakened, settings, [rule_named("iam-job-roles-least-privilege")])
    assert [v.resource_name for v in found] == ["backup-jobs-pg-dump-role"]
