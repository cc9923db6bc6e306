"""Failover is a role switch: `dr` evaluated as standby and as primary must be an in-place update (same URNs for
everything stateful, all protected, the replica link gone), and across both stacks exactly one record is PRIMARY."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from evaluation.mock_program import Evaluation

Program = Callable[[str, str | None], Evaluation]
STATEFUL = ("aws:kms/key:Key", "aws:s3/bucket:Bucket", "aws:rds/instance:Instance")
# Declared in one role only, and none of them holds data: the standby's reference to the primary stack, and the
# primary's copying of automated backups to the peer region.
ROLE_ONLY = {
    "pulumi:pulumi:StackReference",
    "aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication",
    # The primary writes the master password it sets; a replica inherits it (kept on demotion: retain_on_delete).
    "aws:secretsmanager/secretVersion:SecretVersion",
    # The primary's registry replicates drtopo's images to the peer's (components/registry.py).
    "aws:ecr/replicationConfiguration:ReplicationConfiguration",
}


def stateful(ev: Evaluation) -> dict[str, bool]:
    return {r.urn: r.protect for r in ev.resources if r.type in STATEFUL}


@pytest.mark.parametrize("stack", ["dr", "prod"])
def test_role_switch_keeps_every_stateful_urn_and_protection(program: Program, stack: str) -> None:
    configured = program(stack, None)
    switched = program(stack, "standby" if configured.settings.is_primary else "primary")
    assert configured.settings.role != switched.settings.role
    before, after = stateful(configured), stateful(switched)
    # four buckets; storage, database, copies, three alert (database, DNS, readiness), the incident and the volume
    # backups' keys; one DB
    assert len(before) == 4 + 8 + 1
    assert before.keys() == after.keys()
    assert all(before.values()) and all(after.values())


@pytest.mark.parametrize("stack", ["dr", "prod"])
def test_role_switch_changes_only_role_specific_resources(program: Program, stack: str) -> None:
    standby, primary = program(stack, "standby"), program(stack, "primary")
    types = {r.urn: r.type for r in standby.resources} | {r.urn: r.type for r in primary.resources}
    standby_urns, primary_urns = {r.urn for r in standby.resources}, {r.urn for r in primary.resources}
    assert {types[urn] for urn in standby_urns ^ primary_urns} == ROLE_ONLY


def test_promotion_drops_the_replica_link_in_place(program: Program) -> None:
    standby, primary = program("dr", "standby"), program("dr", "primary")
    replica = standby.one("aws:rds/instance:Instance")
    promoted = primary.one("aws:rds/instance:Instance")
    assert replica.urn == promoted.urn
    assert replica.inputs["replicateSourceDb"].startswith("arn:aws:rds:us-east-1:")
    assert "replicateSourceDb" not in promoted.inputs
    unchanged = ("identifier", "kmsKeyId", "storageEncrypted", "multiAz", "deletionProtection", "engineVersion")
    assert {k: replica.inputs[k] for k in unchanged} == {k: promoted.inputs[k] for k in unchanged}
    assert promoted.inputs["backupRetentionPeriod"] == replica.inputs["backupRetentionPeriod"] >= 7
    assert (
        primary.one("aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication").inputs["region"]
        == "us-east-1"
    )


@pytest.mark.parametrize(("prod_role", "dr_role"), [("primary", "standby"), ("standby", "primary")])
def test_exactly_one_primary_record_across_the_stacks(program: Program, prod_role: str, dr_role: str) -> None:
    records = [program(s, r).one("aws:route53/record:Record").inputs for s, r in (("prod", prod_role), ("dr", dr_role))]
    failovers = sorted(policy["type"] for record in records for policy in record["failoverRoutingPolicies"])
    assert failovers == ["PRIMARY", "SECONDARY"]
    assert records[0]["name"] == records[1]["name"] and records[0]["zoneId"] == records[1]["zoneId"]
    assert records[0]["setIdentifier"] != records[1]["setIdentifier"]
    primary = next(r for r in records if r["failoverRoutingPolicies"] == [{"type": "PRIMARY"}])
    expected_region = "us-east-1" if prod_role == "primary" else "us-west-2"
    assert primary["setIdentifier"] == expected_region
