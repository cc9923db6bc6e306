"""One source for an RDS instance's arguments: what the program declares is what a failback creates first.

The program is evaluated under Pulumi's mocks; its `rds.Instance` inputs must be exactly `instance_inputs` plus the
role's own, and `replica_requests` must carry every one of them to RDS the way terraform-provider-aws does (the
create call, or the modify after it; the expected calls are written out in tests/unit/provider_rules.py from the
provider's documentation), with the stack's own database key. `import_command` must name the resource
as the program registers it (type, logical name, parent).
"""

from __future__ import annotations

import pytest
from pydantic.alias_generators import to_camel

from drtopo import naming
from drtopo.database.instance import (
    RDS_INSTANCE,
    import_command,
    instance_inputs,
    logical_name,
    replica_requests,
)
from drtopo.settings import Settings, load_settings
from evaluation.mock_program import Evaluation
from tests.evaluations import evaluation_of
from tests.unit.provider_rules import (
    PROVIDER_DELETE_ONLY,
    REPLICA_CREATE_PARAMETERS,
    REPLICA_FROM_SOURCE,
    REPLICA_MODIFY_PARAMETERS,
)

STANDALONE = {"dbName", "username", "passwordWo", "passwordWoVersion"}


def demoted_prod() -> Settings:
    """prod after a failover to dr, as promote writes it: standby at generation 1, generation 0 retired."""
    return load_settings(
        "prod", overrides={"role": "standby", "database": {"generation": 1, "retiredGenerations": [0]}}
    )


@pytest.fixture(scope="module")
def standby() -> Evaluation:
    return evaluation_of(demoted_prod())


def camel(inputs: dict[str, object]) -> dict[str, object]:
    return {to_camel(k): v for k, v in inputs.items()}


def test_the_replica_the_program_declares_is_instance_inputs_and_its_source(standby: Evaluation) -> None:
    settings = standby.settings
    replica = standby.one(RDS_INSTANCE, logical_name(1))
    expected = camel(instance_inputs(settings, 1, standby.exports["dbKmsKeyArn"]))
    assert {k: v for k, v in replica.inputs.items() if k != "replicateSourceDb"} == expected
    assert set(replica.inputs) - set(expected) == {"replicateSourceDb"}
    assert replica.inputs["identifier"] == naming.db_identifier(settings) == "exception-collector-us-east-1-g1"


def test_every_instance_of_every_role_is_instance_inputs_and_its_role_inputs(standby: Evaluation) -> None:
    primary = evaluation_of(load_settings("prod"))
    # Generation 0 of the demoted stack: the former primary, declared as it stands.
    (retired,) = [r for r in standby.of_type(RDS_INSTANCE) if r.name == logical_name(0)]
    for evaluation, instance, generation in ((primary, primary.one(RDS_INSTANCE), 0), (standby, retired, 0)):
        expected = camel(instance_inputs(evaluation.settings, generation, evaluation.exports["dbKmsKeyArn"]))
        assert {k: v for k, v in instance.inputs.items() if k not in STANDALONE} == expected
        assert set(instance.inputs) - set(expected) == STANDALONE


def test_the_replica_requests_carry_every_declared_argument_with_the_database_key(standby: Evaluation) -> None:
    settings = standby.settings
    key = standby.exports["dbKmsKeyArn"]
    assert key != standby.exports["kmsKeyArn"], "the database key, not the backup buckets' key"
    inputs = instance_inputs(settings, 1, key)
    source = "arn:aws:rds:us-west-2:123456789012:db:exception-collector-us-west-2"
    create, modify = replica_requests(inputs, source)
    # The expected calls come from the provider's documented behaviour (tests/unit/provider_rules.py, with sources),
    # never from the tables the code under test keeps.
    assert set(inputs) == (
        set(REPLICA_CREATE_PARAMETERS) | set(REPLICA_MODIFY_PARAMETERS) | REPLICA_FROM_SOURCE | PROVIDER_DELETE_ONLY
    )
    sent = {name: inputs[name] for name in REPLICA_CREATE_PARAMETERS}
    sent["tags"] = [{"Key": "drtopo:stack", "Value": "prod"}]  # the API's Tag list
    assert create == {
        **{api: sent[name] for name, api in REPLICA_CREATE_PARAMETERS.items()},
        "SourceDBInstanceIdentifier": source,
        "SourceRegion": "us-west-2",
    }
    assert modify == {
        "DBInstanceIdentifier": "exception-collector-us-east-1-g1",
        "ApplyImmediately": True,
        **{api: inputs[name] for name, api in REPLICA_MODIFY_PARAMETERS.items()},
    }
    assert create["KmsKeyId"] == key and create["SourceDBInstanceIdentifier"] == source
    assert create["SourceRegion"] == "us-west-2"  # boto3 presigns the cross-region request there
    assert create["DBInstanceIdentifier"] == modify["DBInstanceIdentifier"] == "exception-collector-us-east-1-g1"
    assert "DBParameterGroupName" not in create, "PostgreSQL refuses a parameter group at replica creation"
    assert modify["DBParameterGroupName"] == naming.parameter_group_name(settings)


def test_an_input_without_a_replica_rule_is_refused() -> None:
    inputs = {**instance_inputs(demoted_prod(), 1, "arn:aws:kms:us-east-1:1:key/db"), "iops": 3000}
    with pytest.raises(ValueError, match=r"inputs \['iops'\] have no rule"):
        replica_requests(inputs, "arn:aws:rds:us-west-2:1:db:x")


def test_the_import_command_names_the_resource_as_the_program_registers_it(standby: Evaluation) -> None:
    replica = standby.one(RDS_INSTANCE, logical_name(1))
    command = import_command(standby.settings)
    # Under the mocks the stack itself is in the parent's type chain; a real URN leaves the root stack out.
    parent = replica.parent_urn.replace("pulumi:pulumi:Stack$", "")
    assert command.split()[-3:] == [RDS_INSTANCE, replica.name, replica.inputs["identifier"]]
    assert f"--parent database={parent}" in command
    assert "--stack prod" in command and "--protect" in command
