"""Credentials in the standby region: what the program declares (evaluated under Pulumi's mocks), and a standby's
scripts reading them on the AWS emulator (a moto_server of its own, seeded as the lab seeds it).

The program replicates the primary's master secret into the standby region and has a standby export it by name
(`dbPasswordSecretArn`); the lab's seeding is checked against that declaration, never cited as evidence of its own.
What the emulator shows: a standby's scripts (the backup jobs included) read the password with a client of their own
region by the name the program exports. What it cannot show: a region actually failing (one emulator serves every
region), replication lag of the secret, IAM evaluating the jobs' policies (moto enforces none) or EKS exchanging a
ServiceAccount token for the role (no pod identity webhook in the lab's cluster).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from drtopo import naming
from drtopo.database.connect import password
from drtopo.outputs import StackOutputs, bucket_outputs, outputs_document
from drtopo.settings import Settings, load_settings
from evaluation.mock_program import Evaluation, evaluate
from lab import aws, process

pytestmark = pytest.mark.lab
STACKS = ("prod", "dr")
SECRET = "aws:secretsmanager/secret:Secret"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Settings]]]:
    root: Path = tmp_path_factory.mktemp("standby-credentials")
    port = process.free_port()
    pid = aws.spawn(root, port)
    try:
        process.wait_port(port, 60, "moto_server", pid)
        endpoint = aws.endpoint_url(port)
        settings = {s: load_settings(s) for s in STACKS}
        aws.seed(endpoint, settings)
        yield endpoint, settings
    finally:
        process.stop(root, aws.PROCESS_NAME)


@pytest.fixture(scope="module")
def declared() -> dict[str, Evaluation]:
    """Each stack's program under Pulumi's mocks, in the shipped roles (prod primary, dr standby)."""
    return {stack: evaluate(load_settings(stack)) for stack in STACKS}


def test_the_program_replicates_the_primarys_master_secret_into_the_standby_region(
    declared: dict[str, Evaluation], seeded: tuple[str, dict[str, Settings]]
) -> None:
    secret = declared["prod"].one(SECRET, "master-secret")
    assert secret.inputs["name"] == "drtopo/us-east-1/database/master"
    # Encrypted there with the standby region's own database key, by alias (a key ARN would name its region).
    assert secret.inputs["replicas"] == [{"region": "us-west-2", "kmsKeyId": "alias/drtopo-us-west-2-database"}]
    assert secret.protect
    # A standby names the primary's secret by name: looked up in the client's region, it is the local replica.
    assert declared["dr"].exports["dbPasswordSecretArn"] == "drtopo/us-east-1/database/master"
    # The lab seeds the emulator as the program declares it (the seeding is checked, not the evidence).
    endpoint, settings = seeded
    seeded_secret = aws.client("secretsmanager", settings["prod"].region, endpoint).describe_secret(
        SecretId=secret.inputs["name"]
    )
    assert [r["Region"] for r in seeded_secret["ReplicationStatus"]] == [r["region"] for r in secret.inputs["replicas"]]


def test_a_standby_reads_the_password_in_its_own_region(
    seeded: tuple[str, dict[str, Settings]], declared: dict[str, Evaluation], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, settings = seeded
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    for key, value in aws.DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    prod, dr = settings["prod"], settings["dr"]
    stored = json.loads(
        aws.client("secretsmanager", prod.region, endpoint).get_secret_value(
            SecretId=naming.db_secret_name(prod.region)
        )["SecretString"]
    )
    assert stored["username"] == prod.database.username and len(stored["password"]) >= 20
    # dr's outputs with the secret the program exports while standby, read by the scripts with a us-west-2 client.
    exported = declared["dr"].exports["dbPasswordSecretArn"]
    dr_out = _standby_outputs(dr, exported)
    assert dr_out.region == "us-west-2"
    assert password(dr_out) == stored["password"]
    # The same name in a region holding no replica is not found: the read really is regional.
    lonely = dr.model_copy(update={"region": "eu-west-1"})
    with pytest.raises(ClientError, match="ResourceNotFound"):
        password(_standby_outputs(lonely, exported))


def _standby_outputs(settings: Settings, secret: str) -> StackOutputs:
    document = outputs_document(
        settings,
        {
            "dbInstanceId": naming.db_identifier(settings),
            "dbArn": f"arn:aws:rds:{settings.region}:123456789012:db:{naming.db_identifier(settings)}",
            "dbAddress": process.LOOPBACK,
            "dbPort": settings.database.port,
            "dbPasswordSecretArn": secret,
            "kmsKeyArn": "unused",
            **bucket_outputs({p: naming.bucket_name(settings, p) for p in naming.BUCKET_PURPOSES}),
            "hostedZoneId": "unused",
            "healthCheckId": "unused",
        },
    )
    return StackOutputs.model_validate(document)
