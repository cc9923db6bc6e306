"""The emulator holds what the stacks would create, under the names and identifiers the outputs carry.

"What the stacks would create" is the program's declaration, evaluated under Pulumi's mocks for the lab's stack
files: the lab seeds the emulator with code of its own (lab/aws.py), so its database and buckets are checked against
what the program declares, never taken as evidence of themselves.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from drtopo import naming
from drtopo.outputs import StackOutputs, load_outputs
from evaluation.mock_program import Evaluation, evaluate
from lab.core import Lab

pytestmark = pytest.mark.lab


def outputs(lab: Lab, stack: str) -> StackOutputs:
    return load_outputs(lab.region(stack).outputs_path, stack)


def test_outputs_files_load_and_point_at_the_lab(lab: Lab) -> None:
    prod, dr = outputs(lab, "prod"), outputs(lab, "dr")
    assert (prod.role, prod.failover, dr.role, dr.failover) == ("primary", "PRIMARY", "standby", "SECONDARY")
    assert prod.db_port != dr.db_port and prod.db_address == dr.db_address == "127.0.0.1"
    # Clients outside a region reach it through its gate (lab/gates.py).
    assert prod.db_port == lab.prod.gate_port("postgres")
    assert prod.kafka_bootstrap == dr.peer_kafka_bootstrap == lab.prod.kafka.gated_bootstrap
    assert prod.service_url == lab.prod.service.gated_url
    assert lab.env()["AWS_ENDPOINT_URL"] == lab.aws_endpoint


@pytest.fixture(scope="module")
def declared(lab: Lab) -> dict[str, Evaluation]:
    """Each stack's program under Pulumi's mocks, for the lab's stack files."""
    return {stack: evaluate(lab.region(stack).settings) for stack in ("prod", "dr")}


def declared_inputs(evaluation: Evaluation, type_token: str, name: str) -> dict[str, Any]:
    (found,) = [r.inputs for r in evaluation.of_type(type_token) if r.name == name]
    return found


def test_rds_primary_and_cross_region_replica_are_as_the_program_declares(
    lab: Lab, declared: dict[str, Evaluation]
) -> None:
    prod, dr = outputs(lab, "prod"), outputs(lab, "dr")
    live = {
        out.stack: boto3.client("rds", region_name=out.region).describe_db_instances(
            DBInstanceIdentifier=out.db_instance_id
        )["DBInstances"][0]
        for out in (prod, dr)
    }
    for out in (prod, dr):
        want = declared_inputs(declared[out.stack], "aws:rds/instance:Instance", "database")
        got = live[out.stack]
        # DescribeDBInstances' fields (RDS API reference, "DBInstance") against the declared rds.Instance inputs.
        assert (got["DBInstanceIdentifier"], got["DBInstanceClass"], got["MultiAZ"]) == (
            want["identifier"],
            want["instanceClass"],
            want["multiAz"],
        ), out.stack
        assert (got["DeletionProtection"], got["Endpoint"]["Port"]) == (want["deletionProtection"], want["port"])
        assert got["DBInstanceArn"] == out.db_arn and got["KmsKeyId"] == out.kms_key_arn
    primary, replica = live["prod"], live["dr"]
    want_primary = declared_inputs(declared["prod"], "aws:rds/instance:Instance", "database")
    want_replica = declared_inputs(declared["dr"], "aws:rds/instance:Instance", "database")
    assert "replicateSourceDb" not in want_primary and primary.get("ReadReplicaSourceDBInstanceIdentifier") is None
    assert (primary["StorageEncrypted"], primary["BackupRetentionPeriod"]) == (
        want_primary["storageEncrypted"],
        want_primary["backupRetentionPeriod"],
    )
    # The program names the source by ARN (cross-region: pulumi-aws `replicate_source_db`), of prod's instance.
    source = want_replica["replicateSourceDb"]
    assert source.split(":")[3] == prod.region and source.endswith(f":db:{prod.db_instance_id}")
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == prod.db_arn
    assert boto3.client("kms", region_name=dr.region).describe_key(KeyId=dr.kms_key_arn)["KeyMetadata"]["Enabled"]


def test_buckets_are_as_the_program_declares_them(lab: Lab, declared: dict[str, Evaluation]) -> None:
    for stack in ("prod", "dr"):
        out, program = outputs(lab, stack), declared[stack]
        s3 = boto3.client("s3", region_name=out.region)
        for purpose, bucket in zip(
            naming.BUCKET_PURPOSES, (out.dump_bucket, out.wal_bucket, out.config_bucket, out.audit_bucket), strict=True
        ):
            name = f"backups-{purpose}"
            assert declared_inputs(program, "aws:s3/bucket:Bucket", name)["bucket"] == bucket
            versioning = declared_inputs(program, "aws:s3/bucketVersioning:BucketVersioning", name)
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == versioning["versioningConfiguration"]["status"]
            (sse_rule,) = declared_inputs(
                program, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", name
            )["rules"]
            sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
            by_default = sse["ApplyServerSideEncryptionByDefault"]
            assert by_default["SSEAlgorithm"] == sse_rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
            assert by_default["KMSMasterKeyID"] == out.kms_key_arn  # the lab's key, in place of the mocked ARN
            block = declared_inputs(program, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name)
            live_block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            assert live_block == {
                "BlockPublicAcls": block["blockPublicAcls"],
                "IgnorePublicAcls": block["ignorePublicAcls"],
                "BlockPublicPolicy": block["blockPublicPolicy"],
                "RestrictPublicBuckets": block["restrictPublicBuckets"],
            }
            (replication,) = declared_inputs(program, "aws:s3/bucketReplicationConfig:BucketReplicationConfig", name)[
                "rules"
            ]
            rule = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]["Rules"][0]
            assert (rule["ID"], rule["Destination"]["Bucket"]) == (
                replication["id"],
                replication["destination"]["bucket"],
            )
        lock_config = declared_inputs(
            program, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "backups-audit"
        )["rule"]["defaultRetention"]
        lock = s3.get_object_lock_configuration(Bucket=out.audit_bucket)["ObjectLockConfiguration"]
        assert lock["Rule"]["DefaultRetention"]["Mode"] == lock_config["mode"] == "COMPLIANCE"
        assert lock["Rule"]["DefaultRetention"]["Years"] == lock_config["years"]


def test_route53_failover_records_and_health_checks(lab: Lab) -> None:
    prod, dr = outputs(lab, "prod"), outputs(lab, "dr")
    assert prod.hosted_zone_id == dr.hosted_zone_id
    route53 = boto3.client("route53")
    records = route53.list_resource_record_sets(HostedZoneId=prod.hosted_zone_id)["ResourceRecordSets"]
    failover = {r["SetIdentifier"]: r for r in records if r["Name"].rstrip(".") == prod.record_name and "Failover" in r}
    assert failover[prod.set_identifier]["Failover"] == "PRIMARY"
    assert failover[dr.set_identifier]["Failover"] == "SECONDARY"
    for out in (prod, dr):
        # The record carries the calculated AND of the endpoint check and the check on the peer's takeover alarm.
        record_check = route53.get_health_check(HealthCheckId=failover[out.set_identifier]["HealthCheckId"])
        calculated = record_check["HealthCheck"]["HealthCheckConfig"]
        assert calculated["Type"] == "CALCULATED" and calculated["HealthThreshold"] == 2
        children = calculated["ChildHealthChecks"]
        assert out.health_check_id in children and len(children) == 2
        (signal,) = [c for c in children if c != out.health_check_id]
        assert route53.get_health_check(HealthCheckId=signal)["HealthCheck"]["HealthCheckConfig"]["Type"] == (
            "CLOUDWATCH_METRIC"
        )
        # Each region holds its own takeover alarm, never evaluated by the emulator (moto starts it OK where AWS
        # starts INSUFFICIENT_DATA; either counts healthy for the peer's check).
        (alarm,) = boto3.client("cloudwatch", region_name=out.region).describe_alarms(
            AlarmNames=[naming.takeover_alarm_name(out.region)]
        )["MetricAlarms"]
        assert alarm["StateValue"] != "ALARM" and alarm["TreatMissingData"] == "ignore"
        config = route53.get_health_check(HealthCheckId=out.health_check_id)["HealthCheck"]["HealthCheckConfig"]
        assert config["Port"] == int(out.service_url.rsplit(":", 1)[1])
        assert config["ResourcePath"] == "/actuator/health"
