"""The modelled provider rules on their own: what updates in place, what replaces, what the provider refuses."""

from __future__ import annotations

import pytest

from tests.unit.provider_rules import RDS_INSTANCE, ROUTE53_RECORD, Desired, Live, Refused, StateEntry, plan

SOURCE = "arn:aws:rds:us-east-1:123456789012:db:exception-collector-us-east-1"
PRIMARY = {"identifier": "db", "engineVersion": "15", "kmsKeyId": "k1", "dbName": "app", "username": "admin"}
REPLICA = {"identifier": "db", "engineVersion": "15", "kmsKeyId": "k1", "replicateSourceDb": SOURCE}


def state(inputs: dict, protect: bool = True, type_token: str = RDS_INSTANCE) -> StateEntry:
    return StateEntry(type_token, dict(inputs), dict(inputs), protect, retain_on_delete=True)


def declared(inputs: dict, type_token: str = RDS_INSTANCE, ignore: tuple[str, ...] = ()) -> Desired:
    return Desired(type_token, inputs, protect=True, retain_on_delete=True, ignore_changes=ignore)


@pytest.mark.parametrize(
    ("change", "kind"),
    [({}, "same"), ({"engineVersion": "16"}, "update"), ({"identifier": "db-renamed"}, "update")],
    ids=["nothing", "engine-version", "identifier"],
)
def test_updates_in_place(change: dict, kind: str) -> None:
    assert plan("u", state(PRIMARY), declared(PRIMARY | change), None).kind == kind


@pytest.mark.parametrize("key", ["kmsKeyId", "dbName", "username", "storageEncrypted", "engine"])
def test_force_new_inputs_replace_only_what_is_unprotected(key: str) -> None:
    changed = PRIMARY | {key: "other"}
    with pytest.raises(Refused, match=rf"\['{key}'\] force a replacement of a protected resource"):
        plan("u", state(PRIMARY), declared(changed), None)
    assert plan("u", state(PRIMARY, protect=False), declared(changed), None).changed == (key,)


def test_dropping_the_source_promotes_a_live_replica_and_is_refused_on_a_standalone_instance() -> None:
    promoted = {k: v for k, v in REPLICA.items() if k != "replicateSourceDb"}
    assert plan("u", state(REPLICA), declared(promoted), Live(is_replica=True)).kind == "promote"
    with pytest.raises(Refused, match="not a read replica"):
        plan("u", state(REPLICA), declared(promoted), Live(is_replica=False))


@pytest.mark.parametrize("source", [SOURCE, SOURCE.replace("us-east-1", "us-west-2")], ids=["add", "re-point"])
def test_a_new_source_on_an_existing_instance_is_refused(source: str) -> None:
    old = PRIMARY if source == SOURCE else REPLICA
    new = {k: v for k, v in old.items() if k not in ("dbName", "username")} | {"replicateSourceDb": source}
    with pytest.raises(Refused, match="cannot elect new source database for replication"):
        plan("u", state(old), declared(new, ignore=("dbName", "username")), Live(is_replica=False))


def test_a_replica_may_not_declare_a_database_name() -> None:
    with pytest.raises(Refused, match="dbName conflicts with replicateSourceDb"):
        plan("u", None, declared(REPLICA | {"dbName": "app"}), None)


def test_ignored_inputs_take_their_old_value_or_drop_out() -> None:
    assert plan("u", state(PRIMARY), declared(PRIMARY | {"dbName": "x"}, ignore=("dbName",)), None).kind == "same"
    promoted = {k: v for k, v in PRIMARY.items() if k != "dbName"}  # a state without the name it never declared
    assert plan("u", state(promoted), declared(PRIMARY, ignore=("dbName",)), None).kind == "same"


def test_a_record_moves_between_primary_and_secondary_in_place_but_a_new_name_replaces_it() -> None:
    record = {"name": "api.example", "zoneId": "Z1", "failoverRoutingPolicies": [{"type": "PRIMARY"}]}
    old = state(record, protect=False, type_token=ROUTE53_RECORD)
    flipped = record | {"failoverRoutingPolicies": [{"type": "SECONDARY"}]}
    assert plan("u", old, declared(flipped, ROUTE53_RECORD), None).kind == "update"
    assert plan("u", old, declared(record | {"name": "www.example"}, ROUTE53_RECORD), None).kind == "replace"


def test_leaving_the_program_is_refused_while_protected_and_forgets_when_retained() -> None:
    with pytest.raises(Refused, match="cannot delete a protected resource"):
        plan("u", state(PRIMARY), None, None)
    assert plan("u", state(PRIMARY, protect=False), None, None).kind == "forget"
