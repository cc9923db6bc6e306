"""scripts.failback on the lab: back to prod after a planned or an unplanned failover, losing no acknowledged write.

Both start from `fresh_pg`, fail over to dr with scripts.promote, then fail back; the end state must be the baseline
topology again: prod the writable primary, dr its streaming standby, prod's record PRIMARY, the stack files as
before but for each stack's next database generation.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import boto3
import pytest

from bench.switchover import (
    BASELINE_DNS,
    DB_ONLY,
    DnsFollowingWriter,
    connect,
    end_state,
    outputs,
    present,
    run_cli,
    wait_acks,
)
from drtopo import naming
from drtopo.database.instance import RDS_INSTANCE, import_command
from drtopo.failover import marker
from drtopo.failover.roles import StackChange, stack_text
from drtopo.kafka.admin import committed_offsets
from drtopo.mm2_properties import cluster_alias
from drtopo.settings import Role, load_settings
from evaluation.mock_program import evaluate
from lab.core import Lab
from tests.integration.switchover_support import (
    applied_offsets,
    collectors_paused,
    consume_and_wait_for_checkpoints,
    kafka_running,
    stop_collectors,
)

pytestmark = pytest.mark.lab


def cli(lab: Lab, module: str, stack: str, tmp_path: Path, *extra: str):
    env = {"DRTOPO_STATE_DIR": str(tmp_path / "journal")}
    return run_cli(module, "--stack", stack, "--outputs", lab.region(stack).outputs_path, *DB_ONLY, *extra, env=env)


def assert_back_to_baseline(lab: Lab, stack_files: dict[str, str]) -> None:
    state = end_state(lab)
    assert state["servers"]["prod"] == {"in_recovery": False, "default_read_only": "off"}
    assert state["servers"]["dr"]["in_recovery"] is True
    assert state["dns"] == BASELINE_DNS
    # The application back where it was: prod's at the primary's count, all available; dr's at 0 (pilot light).
    assert state["application"] == {"prod": {"replicas": 1, "available": 1}, "dr": {"replicas": 0, "available": 0}}
    # The roles as before; each stack one database generation on (RDS cannot demote), as the roles steps wrote it.
    for stack, role in (("prod", Role.PRIMARY), ("dr", Role.STANDBY)):
        assert state["stack_files"][stack] == stack_text(stack_files[stack], StackChange(stack, role, 1, (0,)))
    # The rebuilt standby follows the new primary.
    with connect(lab, "prod") as prod, connect(lab, "dr") as dr:
        prod.execute(
            "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation)"
            " VALUES ('after-failback', 'ORDER', 'x', 'CREATE')"
        )
        deadline = time.monotonic() + 10
        while not dr.execute(
            "SELECT count(*) FROM interface_exceptions WHERE transaction_id = 'after-failback'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "dr does not replicate from prod after the failback"
            time.sleep(0.05)
    assert_only_declared_instances(lab, state["rds"])
    # The role marker says what the stack files say, one epoch per switch (a resumed run wrote it once).
    for region in ("us-east-1", "us-west-2"):
        live = marker.read(region, marker.marker_name("prod", "dr"))
        assert live is not None and (live.epoch, live.primary, live.standby) == (2, "prod", "dr"), region


def declared_instances(lab: Lab, stack: str) -> set[str]:
    """The RDS instances a stack's program declares: its current generation and the retired ones."""
    settings = load_settings(stack, lab.project_dir)
    database = settings.database
    return {naming.db_identifier(settings, g) for g in (database.generation, *database.retired_generations)}


# DescribeDBInstances' DBInstance fields (RDS API reference, "DBInstance" data type) -> the `aws.rds.Instance` input
# (camelCased, as the program registers it under Pulumi's mocks) each one reports, written out here rather than
# taken from the script's own tables (drtopo.database.instance.REPLICA_*).
LIVE_FIELD_OF_INPUT = {
    "DBInstanceClass": "instanceClass",
    "MultiAZ": "multiAz",
    "StorageType": "storageType",
    "DeletionProtection": "deletionProtection",
    "CopyTagsToSnapshot": "copyTagsToSnapshot",
    "IAMDatabaseAuthenticationEnabled": "iamDatabaseAuthenticationEnabled",
    "BackupRetentionPeriod": "backupRetentionPeriod",
}


def assert_only_declared_instances(lab: Lab, rds: dict[str, list[str]]) -> None:
    """No RDS instance on the emulator that no stack declares (nothing renamed or made behind Pulumi's back), and
    the replica failback made carries what the program declares for it (the program evaluated under Pulumi's mocks),
    with the stack's own database key."""
    for stack in ("prod", "dr"):
        assert set(rds[stack]) == declared_instances(lab, stack), stack
    dr = outputs(lab, "dr")
    prod_settings, dr_settings = (load_settings(s, lab.project_dir) for s in ("prod", "dr"))
    client = boto3.client("rds", region_name=dr.region)
    replica = client.describe_db_instances(DBInstanceIdentifier=naming.db_identifier(dr_settings))["DBInstances"][0]
    primary_id = naming.db_identifier(prod_settings)
    assert replica["ReadReplicaSourceDBInstanceIdentifier"].endswith(f":db:{primary_id}")
    assert replica["KmsKeyId"] == dr.db_kms_key_arn
    (declared,) = [
        r.inputs
        for r in evaluate(dr_settings).of_type(RDS_INSTANCE)
        if r.inputs["identifier"] == replica["DBInstanceIdentifier"]
    ]
    assert declared["replicateSourceDb"], "the program declares dr's current instance a replica"
    assert {field: replica[field] for field in LIVE_FIELD_OF_INPUT} == {
        field: declared[name] for field, name in LIVE_FIELD_OF_INPUT.items()
    }
    assert replica["Endpoint"]["Port"] == declared["port"]
    assert replica["TagList"] == [{"Key": k, "Value": v} for k, v in declared["tags"].items()]


def test_planned_switchover_and_failback_under_writes_lose_no_acknowledged_write(fresh_pg: Lab, tmp_path: Path) -> None:
    stack_files = end_state(fresh_pg)["stack_files"]
    writer = DnsFollowingWriter(fresh_pg)
    writer.start()
    wait_acks(writer, 50)
    promoted = cli(fresh_pg, "promote", "dr", tmp_path)
    wait_acks(writer, len(writer.acks) + 50)
    failback = cli(fresh_pg, "failback", "prod", tmp_path, "--json", str(tmp_path / "failback.json"))
    wait_acks(writer, len(writer.acks) + 30)
    acks = writer.stop()

    assert promoted.returncode == 0, promoted.stderr
    assert failback.returncode == 0, failback.stderr
    keys = [a.key for a in acks]
    assert present(fresh_pg, "prod", keys) == set(keys)
    assert acks[0].stack == "prod" and acks[-1].stack == "prod"
    assert "dr" in {a.stack for a in acks}
    report = json.loads((tmp_path / "failback.json").read_text())
    assert report["ok"]
    assert [c["name"] for c in report["checks"] if c["name"] in ("rebuild", "drain", "rebuild-peer")] == [
        "rebuild",
        "drain",
        "rebuild-peer",
    ]
    assert_back_to_baseline(fresh_pg, stack_files)
    # The replicas failback created are adopted by the stacks' state: the report says how.
    for stack in ("prod", "dr"):
        settings = load_settings(stack, fresh_pg.project_dir)
        assert import_command(settings) in failback.stdout


def test_failback_after_sigkill_rewinds_the_crashed_primary(fresh_pg: Lab, tmp_path: Path) -> None:
    stack_files = end_state(fresh_pg)["stack_files"]
    writer = DnsFollowingWriter(fresh_pg)
    writer.start()
    wait_acks(writer, 50)
    fresh_pg.prod.postgres.kill()
    promoted = cli(fresh_pg, "promote", "dr", tmp_path)
    wait_acks(writer, len(writer.acks) + 50)
    survived = set(present(fresh_pg, "dr", [a.key for a in writer.acks]))

    before_dry_run = end_state(fresh_pg)
    dry = cli(fresh_pg, "failback", "prod", tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert ". rebuild " in dry.stdout and ". rebuild-peer " in dry.stdout
    assert end_state(fresh_pg) == before_dry_run

    failback = cli(fresh_pg, "failback", "prod", tmp_path, "--json", str(tmp_path / "failback.json"))
    wait_acks(writer, len(writer.acks) + 30)
    acks = writer.stop()

    assert promoted.returncode == 0, promoted.stderr
    assert failback.returncode == 0, failback.stderr
    document = json.loads((tmp_path / "failback.json").read_text())
    rebuilt = next(c for c in document["checks"] if c["name"] == "rebuild")
    assert "pg_rewind" in rebuilt["detail"]
    # What survived the failover and every write acknowledged since is on prod after the failback; before rewinding
    # prod, failback looked for what the crashed prod (started read-only) committed that dr lacks, and re-applied it.
    keys = [a.key for a in acks]
    on_prod = present(fresh_pg, "prod", keys)
    first_on_dr = next(i for i, a in enumerate(acks) if a.stack == "dr")
    after_failover = {a.key for a in acks[first_on_dr:]}
    assert survived <= on_prod
    assert after_failover <= on_prod
    found = document["measured"]["diverged"]
    assert found["looked"] is True and found["fork"] is not None
    assert found["found"] == found["reapplied"] and found["listed"] == 0
    assert_back_to_baseline(fresh_pg, stack_files)


def test_failback_crashed_after_promotion_resumes_to_the_baseline(fresh_pg: Lab, tmp_path: Path) -> None:
    stack_files = end_state(fresh_pg)["stack_files"]
    assert cli(fresh_pg, "promote", "dr", tmp_path).returncode == 0

    crashed = run_cli(
        "failback",
        "--stack",
        "prod",
        "--outputs",
        fresh_pg.prod.outputs_path,
        *DB_ONLY,
        env={"DRTOPO_STATE_DIR": str(tmp_path / "journal"), "DRTOPO_CRASH_AFTER": "promote"},
    )
    assert crashed.returncode == -signal.SIGKILL
    assert end_state(fresh_pg)["dns"] != BASELINE_DNS  # promoted, not yet flipped

    resumed = cli(fresh_pg, "failback", "prod", tmp_path, "--json", str(tmp_path / "resumed.json"))

    assert resumed.returncode == 0, resumed.stderr
    # The report's step timeline: the interrupted run's steps (through promote) taken from the journal, not run
    # again; every step after it run by this one, rebuild-peer among them.
    measured = json.loads((tmp_path / "resumed.json").read_text())["measured"]
    assert measured["resumed"] is True
    timeline = [(s["step"], bool(s.get("resumed"))) for s in measured["steps"]]
    from_journal = [step for step, resumed_step in timeline if resumed_step]
    ran = [step for step, resumed_step in timeline if not resumed_step]
    assert timeline == [(step, True) for step in from_journal] + [(step, False) for step in ran], timeline
    assert "rebuild" in from_journal and from_journal[-1] == "promote", timeline
    assert "rebuild-peer" in ran and "rebuild" not in ran, timeline
    assert_back_to_baseline(fresh_pg, stack_files)


def test_failback_moves_the_consumer_group_back_at_translated_offsets(fresh_pg: Lab, tmp_path: Path) -> None:
    """While dr is primary, MirrorMaker runs the other way (prod's standby flow, as `pulumi up` scales it); failback
    moves the service's consumer group onto prod at the offsets its checkpoints translate."""
    assert kafka_running(fresh_pg), "the lab's Kafka clusters are not running: the lab is broken, not this test"
    settings = load_settings("prod", fresh_pg.project_dir)
    group, topic = settings.kafka.consumer_group, settings.kafka.mirrored_topics[1]
    with collectors_paused(fresh_pg):
        assert cli(fresh_pg, "promote", "dr", tmp_path).returncode == 0
        try:
            fresh_pg.start_mirrormaker()  # the roles changed: this restarts it on prod's flow, dr -> prod
            assert fresh_pg.mirror_stack() == "prod"
            stop_collectors(fresh_pg)  # promote started dr's: the test plays the group there
            expected = consume_and_wait_for_checkpoints(
                fresh_pg, topic, group, cluster_alias(settings.peer_region), source_stack="dr", target_stack="prod"
            )
            env = {"DRTOPO_STATE_DIR": str(tmp_path / "journal")}
            report = tmp_path / "failback.json"
            proc = run_cli(
                "failback", "--stack", "prod", "--outputs", fresh_pg.prod.outputs_path, "--json", report, env=env
            )
            assert proc.returncode == 0, proc.stderr
            applied = applied_offsets(json.loads(report.read_text()))
            assert {tp: applied[tp] for tp in expected} == expected
            now = committed_offsets(fresh_pg.prod.kafka.bootstrap, group)
            assert all(now.get(tp, o) >= o for tp, o in expected.items())  # resumed from there, never behind
            check = next(c for c in json.loads(report.read_text())["checks"] if c["name"] == "consumer-group")
            assert check["ok"] and "translated offsets" in check["detail"]
            assert fresh_pg.mirror_stack() == "dr"
        finally:
            fresh_pg.restore_baseline()  # MirrorMaker back to prod -> dr
