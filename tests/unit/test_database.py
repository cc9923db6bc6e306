"""The database as each role declares it: the Multi-AZ primary (prod) and the cross-region replica (dr)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi.runtime import rpc

from drtopo import naming
from drtopo.database.parameters import parameter_family, parameters
from drtopo.settings import Database, SettingsError, load_settings
from evaluation.mock_program import MOCK_RANDOM_PASSWORD, Evaluation, Registered, evaluate

INSTANCE = "aws:rds/instance:Instance"
KEY = "aws:kms/key:Key"
BACKUP_COPIES = "aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"


def secret_value(value: Any) -> Any:
    """An input Pulumi carries as a secret (encrypted in state and hidden in every display), unwrapped."""
    assert isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig, value
    return value["value"]


def instance(ev: Evaluation) -> Registered:
    return ev.one(INSTANCE)


def keys_named(data: Any, word: str) -> list[str]:
    """Every key anywhere in `data` that contains `word`."""
    if isinstance(data, dict):
        return [k for k in data if word in k.lower()] + [x for v in data.values() for x in keys_named(v, word)]
    if isinstance(data, list):
        return [x for v in data for x in keys_named(v, word)]
    return []


def test_both_roles_share_the_safe_defaults(stack: Evaluation) -> None:
    settings, db = stack.settings, instance(stack)
    inputs = db.inputs
    assert inputs["identifier"] == naming.db_identifier(settings) == f"exception-collector-{settings.region}"
    assert inputs["engine"] == "postgres"
    assert inputs["engineVersion"] == settings.database.engine_version
    assert inputs["storageEncrypted"] is True
    assert inputs["kmsKeyId"] == stack.one(KEY, "database-key").outputs["arn"]
    assert stack.one(KEY, "database-key").inputs.get("region") is None  # the key lives in the stack's region
    assert inputs["multiAz"] is True
    assert inputs["deletionProtection"] is True
    assert inputs["publiclyAccessible"] is False
    assert inputs["skipFinalSnapshot"] is False
    assert inputs["backupRetentionPeriod"] == settings.database.backup_retention_days >= 7
    assert inputs["parameterGroupName"] == stack.one("aws:rds/parameterGroup:ParameterGroup").inputs["name"]
    assert db.protect
    assert db.parent_urn == stack.one("drtopo:database:Database").urn


def test_no_password_is_declared_anywhere(stack: Evaluation) -> None:
    """The only password is the one Secrets Manager draws at deploy time, handed over write-only."""
    for resource in stack.resources:
        found = [k for k in keys_named(resource.inputs, "password") if not k.endswith("Version")]
        if resource.type == "aws:rds/instance:Instance" and found:
            assert found == ["passwordWo"], (resource.name, found)
            assert secret_value(resource.inputs["passwordWo"]) == MOCK_RANDOM_PASSWORD
        else:
            assert not found, (resource.type, resource.name, found)
    for version in stack.of_type(SECRET_VERSION):
        assert set(version.inputs) == {"secretId", "secretStringWo", "secretStringWoVersion"}
        assert json.loads(secret_value(version.inputs["secretStringWo"]))["password"] == MOCK_RANDOM_PASSWORD


def test_parameter_group_forces_tls_and_archives_every_minute(stack: Evaluation) -> None:
    group = stack.one("aws:rds/parameterGroup:ParameterGroup").inputs
    assert group["family"] == "postgres15"
    values = {p["name"]: p["value"] for p in group["parameters"]}
    assert values["rds.force_ssl"] == "1"
    assert 0 < int(values["archive_timeout"]) <= 60


def test_master_secret_is_this_stacks_own_and_replicated_to_the_peer_region(stack: Evaluation) -> None:
    settings = stack.settings
    secret = stack.one(SECRET, "database-master-secret")
    assert (
        secret.inputs["name"] == naming.db_secret_name(settings.region) == f"drtopo/{settings.region}/database/master"
    )
    assert secret.inputs["kmsKeyId"] == stack.one(KEY, "database-key").outputs["arn"]
    assert secret.inputs["replicas"] == [
        {"region": settings.peer_region, "kmsKeyId": f"alias/drtopo-{settings.peer_region}-database"}
    ]
    assert "region" not in secret.inputs and secret.protect
    assert secret.inputs["recoveryWindowInDays"] == 30


def test_standby_reads_the_primarys_secret_through_its_replica_in_this_region(dr: Evaluation) -> None:
    # The peer's secret has a replica here, under the same name: read by name in dr's own region.
    assert dr.exports["dbPasswordSecretArn"] == naming.db_secret_name(dr.settings.peer_region)
    assert not dr.of_type(SECRET_VERSION)  # a replica inherits the primary's password


def test_primary_password_is_drawn_by_secrets_manager_and_written_only(prod: Evaluation) -> None:
    settings, inputs = prod.settings, instance(prod).inputs
    assert "manageMasterUserPassword" not in inputs  # RDS will not replicate a source whose password it manages
    assert secret_value(inputs["passwordWo"]) == MOCK_RANDOM_PASSWORD and inputs["passwordWoVersion"] == 1
    version = prod.one(SECRET_VERSION, "database-master-secret").inputs
    assert version["secretId"] == "database-master-secret-id" and version["secretStringWoVersion"] == 1
    assert json.loads(secret_value(version["secretStringWo"])) == {
        "engine": "postgres",
        "username": settings.database.username,
        "password": MOCK_RANDOM_PASSWORD,
        "port": settings.database.port,
    }
    assert prod.exports["dbPasswordSecretArn"] == prod.one(SECRET, "database-master-secret").outputs["arn"]


def test_primary_copies_backups_to_the_peer_region(prod: Evaluation) -> None:
    settings, inputs = prod.settings, instance(prod).inputs
    assert (inputs["dbName"], inputs["username"]) == (settings.database.name, settings.database.username)
    assert "replicateSourceDb" not in inputs
    assert not prod.of_type(STACK_REFERENCE)
    copies = prod.one(BACKUP_COPIES).inputs
    peer_key = prod.one(KEY, "database-backup-copies-key")
    assert copies["sourceDbInstanceArn"] == instance(prod).outputs["arn"]
    assert copies["region"] == peer_key.inputs["region"] == settings.peer_region
    assert copies["kmsKeyId"] == peer_key.outputs["arn"]
    assert copies["retentionPeriod"] == settings.database.backup_retention_days
    assert peer_key.protect and peer_key.inputs["enableKeyRotation"] is True


def test_standby_is_a_cross_region_replica_of_the_primary_stack(dr: Evaluation) -> None:
    settings, inputs = dr.settings, instance(dr).inputs
    # The readiness check reads the primary's outputs through a reference of the same name (one stack referenced).
    (reference,) = {r.name: r for r in dr.of_type(STACK_REFERENCE)}.values()
    assert reference.name == settings.primary_stack_reference == "biopro/drtopo/prod"
    assert inputs["replicateSourceDb"] == reference.outputs["outputs"]["dbArn"]
    assert inputs["replicateSourceDb"].startswith(f"arn:aws:rds:{settings.peer_region}:")
    # A replica inherits name, user and password; RDS refuses them on a replica.
    assert not {"dbName", "username", "manageMasterUserPassword"} & set(inputs)
    assert not dr.of_type(BACKUP_COPIES)


def test_standby_may_replicate_an_explicit_arn_without_a_stack_reference() -> None:
    arn = "arn:aws:rds:us-east-1:123456789012:db:exception-collector-us-east-1"
    settings = load_settings("dr", overrides={"primaryStackReference": None, "replicationSourceArn": arn})
    ev = evaluate(settings)
    assert instance(ev).inputs["replicateSourceDb"] == arn
    assert not ev.of_type(STACK_REFERENCE)


def test_replica_lag_alarm_fires_before_the_rpo_and_notifies_an_encrypted_topic(stack: Evaluation) -> None:
    settings = stack.settings
    alarm = stack.one(ALARM, "replica-lag").inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/RDS", "ReplicaLag")
    assert alarm["dimensions"] == {"DBInstanceIdentifier": naming.db_identifier(settings)}
    assert alarm["threshold"] == settings.database.replica_lag_alarm_seconds
    assert alarm["threshold"] < settings.objectives.region_failure.rpo_seconds
    assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["treatMissingData"] == ("notBreaching" if settings.is_primary else "breaching")
    topic = stack.one("aws:sns/topic:Topic", "database-alerts")
    assert alarm["alarmActions"] == [topic.outputs["arn"]]
    topic_key = stack.one(KEY, "database-alerts-key")
    assert topic.inputs["kmsMasterKeyId"] == topic_key.outputs["arn"]
    assert "cloudwatch.amazonaws.com" in topic_key.inputs["policy"]


@pytest.mark.parametrize(("version", "family"), [("15", "postgres15"), ("15.7", "postgres15"), ("16.3", "postgres16")])
def test_parameter_family(version: str, family: str) -> None:
    assert parameter_family(version) == family


def test_parameters_follow_settings() -> None:
    values = {p["name"]: p["value"] for p in parameters(Database(archive_timeout_seconds=30))}
    assert values["archive_timeout"] == "30"


def test_every_instance_is_protected_retained_and_keeps_its_create_only_inputs(stack: Evaluation) -> None:
    db = instance(stack)
    assert db.protect and db.retain_on_delete
    assert db.ignore_changes == ("dbName", "username")


def test_a_later_generation_is_a_new_replica_and_the_retired_one_is_kept_and_snapshotted() -> None:
    settings = load_settings(
        "prod", overrides={"role": "standby", "database": {"generation": 2, "retiredGenerations": [0, 1]}}
    )
    ev = evaluate(settings)
    instances = {r.name: r for r in ev.of_type(INSTANCE)}
    assert set(instances) == {"database", "database-g1", "database-g2"}
    current = instances["database-g2"]
    assert current.inputs["identifier"] == ev.exports["dbInstanceId"] == "exception-collector-us-east-1-g2"
    assert current.inputs["replicateSourceDb"].startswith("arn:aws:rds:")
    assert current.inputs["kmsKeyId"] == ev.exports["dbKmsKeyArn"] == ev.one(KEY, "database-key").outputs["arn"]
    for name, identifier in (
        ("database", "exception-collector-us-east-1"),
        ("database-g1", "exception-collector-us-east-1-g1"),
    ):
        retired = instances[name]
        assert retired.inputs["identifier"] == identifier and "replicateSourceDb" not in retired.inputs
        assert retired.protect and retired.retain_on_delete and retired.inputs["deletionProtection"] is True
        snapshot = ev.one("aws:rds/snapshot:Snapshot", f"{name}-retired")
        assert snapshot.inputs == {
            "dbInstanceIdentifier": identifier, "dbSnapshotIdentifier": f"{identifier}-retired",
            "tags": {"drtopo:stack": "prod"},
        }  # fmt: skip
        assert snapshot.protect
    alarm = ev.one(ALARM, "replica-lag").inputs
    assert alarm["dimensions"] == {"DBInstanceIdentifier": "exception-collector-us-east-1-g2"}


@pytest.mark.parametrize("retired", [[2], [0, 0], [-1]])
def test_retired_generations_must_be_distinct_earlier_ones(retired: list[int]) -> None:
    with pytest.raises(SettingsError, match=r"retiredGenerations .* expected distinct numbers from 0 to 1"):
        load_settings("prod", overrides={"database": {"generation": 2, "retiredGenerations": retired}})
