"""The emulator holds what the stacks would create, under the names and identifiers the outputs carry."""

from __future__ import annotations

import boto3
import pytest

from drtopo import naming
from drtopo.outputs import StackOutputs, load_outputs
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


def test_rds_primary_and_cross_region_replica(lab: Lab) -> None:
    prod, dr = outputs(lab, "prod"), outputs(lab, "dr")
    primary = boto3.client("rds", region_name=prod.region).describe_db_instances(
        DBInstanceIdentifier=prod.db_instance_id
    )["DBInstances"][0]
    replica = boto3.client("rds", region_name=dr.region).describe_db_instances(DBInstanceIdentifier=dr.db_instance_id)[
        "DBInstances"
    ][0]
    assert primary["DBInstanceArn"] == prod.db_arn and replica["DBInstanceArn"] == dr.db_arn
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == prod.db_arn
    assert primary["StorageEncrypted"] and primary["KmsKeyId"] == prod.kms_key_arn
    assert replica["KmsKeyId"] == dr.kms_key_arn
    assert boto3.client("kms", region_name=dr.region).describe_key(KeyId=dr.kms_key_arn)["KeyMetadata"]["Enabled"]


def test_buckets_are_private_encrypted_versioned_and_replicated(lab: Lab) -> None:
    for stack in ("prod", "dr"):
        out = outputs(lab, stack)
        peer = lab.region(out.peer_stack).settings
        s3 = boto3.client("s3", region_name=out.region)
        for purpose, bucket in zip(
            naming.BUCKET_PURPOSES, (out.dump_bucket, out.wal_bucket, out.config_bucket, out.audit_bucket), strict=True
        ):
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
            sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
            assert sse["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == out.kms_key_arn
            assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
            rule = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]["Rules"][0]
            assert rule["Destination"]["Bucket"] == f"arn:aws:s3:::{naming.bucket_name(peer, purpose)}"
        lock = s3.get_object_lock_configuration(Bucket=out.audit_bucket)["ObjectLockConfiguration"]
        assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"


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
