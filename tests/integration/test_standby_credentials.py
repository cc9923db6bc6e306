"""Credentials in the standby region, on the AWS emulator (a moto_server of its own, seeded as the lab seeds it).

What the emulator shows: the primary's master secret is replicated to the standby region under the same name, and a
standby stack's scripts (the backup jobs included) read it with a client of their own region, by the name the
program exports for a standby (`dbPasswordSecretArn`). What it cannot show: a region actually failing (one emulator
serves every region), replication lag of the secret, IAM evaluating the jobs' policies (moto enforces none) or
EKS exchanging a ServiceAccount token for the role (no pod identity webhook in the lab's cluster).
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
from lab import aws, process

pytestmark = pytest.mark.lab
STACKS = ("prod", "dr")


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


def test_the_primarys_master_secret_has_a_replica_in_the_standby_region(
    seeded: tuple[str, dict[str, Settings]],
) -> None:
    endpoint, settings = seeded
    prod, dr = settings["prod"], settings["dr"]
    name = naming.db_secret_name(prod.region)
    primary = aws.client("secretsmanager", prod.region, endpoint).describe_secret(SecretId=name)
    assert [r["Region"] for r in primary["ReplicationStatus"]] == [dr.region]
    replica = aws.client("secretsmanager", dr.region, endpoint).describe_secret(SecretId=name)
    assert replica["PrimaryRegion"] == prod.region
    assert replica["ARN"].startswith(f"arn:aws:secretsmanager:{dr.region}:")


def test_a_standby_reads_the_password_in_its_own_region(
    seeded: tuple[str, dict[str, Settings]], monkeypatch: pytest.MonkeyPatch
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
    # dr as the program exports it while standby: the primary's secret by name, read with a us-west-2 client.
    dr_out = _standby_outputs(dr, naming.db_secret_name(prod.region))
    assert dr_out.region == "us-west-2"
    assert password(dr_out) == stored["password"]
    # The same name in a region holding no replica is not found: the read really is regional.
    lonely = dr.model_copy(update={"region": "eu-west-1"})
    with pytest.raises(ClientError, match="ResourceNotFound"):
        password(_standby_outputs(lonely, naming.db_secret_name(prod.region)))


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
