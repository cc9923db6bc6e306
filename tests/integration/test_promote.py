"""scripts.promote on the lab: planned and unplanned failover, refusals, bad input, crash-and-resume, dry run.

Each destructive test starts from `fresh_pg` (prod primary, dr streaming standby, emulator records and project-copy
roles at baseline) and asserts on both halves: the real PostgreSQL servers and the emulator's Route53/RDS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.switchover import (
    BASELINE_DNS,
    DB_ONLY,
    FAILED_OVER_DNS,
    DnsFollowingWriter,
    connect,
    end_state,
    present,
    run_cli,
    server_state,
    wait_acks,
    write_refused,
)
from bench.switchover import (
    outputs as bench_outputs,
)
from drtopo import naming
from drtopo.backup import wal
from drtopo.backup.store import s3_client
from drtopo.database import rds as rds_platform
from drtopo.database.parameters import parameter_family, parameters
from drtopo.database.pitr import parse_backup_label
from drtopo.failover import marker
from drtopo.kafka.admin import committed_offsets, end_offsets
from drtopo.mm2_properties import cluster_alias
from drtopo.outputs import load_outputs
from drtopo.settings import load_settings
from lab import kube, kube_workloads
from lab.core import Lab
from tests.integration.switchover_support import (
    applied_offsets,
    collectors_paused,
    consume_and_wait_for_checkpoints,
    kafka_running,
)

pytestmark = pytest.mark.lab


@pytest.fixture
def state_env(tmp_path: Path) -> dict[str, str]:
    """A journal folder of the test's own, so no run resumes another test's journal."""
    return {"DRTOPO_STATE_DIR": str(tmp_path / "journal")}


def promote(lab: Lab, env: dict[str, str], *extra: str, outputs_file: Path | None = None):
    return run_cli("promote", "--stack", "dr", "--outputs", outputs_file or lab.dr.outputs_path, *extra, env=env)


def test_planned_switchover_under_writes_loses_no_acknowledged_write(
    fresh_pg: Lab, state_env: dict[str, str], tmp_path: Path
) -> None:
    # Pilot light, the shipped default: nothing of the application runs in dr before the failover.
    assert end_state(fresh_pg)["application"] == BASELINE_APPLICATION
    writer = DnsFollowingWriter(fresh_pg)
    writer.start()
    wait_acks(writer, 50)
    proc = promote(fresh_pg, state_env, *DB_ONLY, "--json", tmp_path / "report.json")
    acked_before_stop = len(writer.acks)
    wait_acks(writer, acked_before_stop + 30)
    acks = writer.stop()

    assert proc.returncode == 0, proc.stderr
    keys = [a.key for a in acks]
    assert present(fresh_pg, "dr", keys) == set(keys)
    assert {a.stack for a in acks} == {"prod", "dr"}
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["measured"]["replica_lag_source"].startswith("primary WAL position")
    state = end_state(fresh_pg)
    assert state["servers"]["dr"] == {"in_recovery": False, "default_read_only": "off"}
    assert state["servers"]["prod"]["default_read_only"] == "on"
    assert "read-only transaction" in write_refused(fresh_pg, "prod")
    assert state["dns"] == FAILED_OVER_DNS
    assert "drtopo:role: primary" in state["stack_files"]["dr"]
    assert "drtopo:role: standby" in state["stack_files"]["prod"]
    # prod cannot demote its instance: promote wrote prod's next database generation, the old one retired.
    database = load_settings("prod", fresh_pg.project_dir).database
    assert (database.generation, database.retired_generations) == (1, (0,))
    # The role marker every later `pulumi up` reads says what the stack files say, in both regions.
    for region in ("us-east-1", "us-west-2"):
        live = marker.read(region, marker.marker_name("prod", "dr"))
        assert live is not None and live.epoch == 1, region
        assert {stack: str(live.role_of(stack)) for stack in ("prod", "dr")} == {"prod": "standby", "dr": "primary"}
    # Each step ran (the report's timeline and checks, and the closed journal), in this order, none skipped: the
    # application before DNS.
    assert_steps_ran(
        fresh_pg, report, ["fence", "drain", "promote", "application", "dns", "application-down", "roles", "protect"]
    )
    assert_application_moved(fresh_pg, report, "dr")
    assert_protected(fresh_pg, report, proc.stdout, "dr")


def assert_protected(lab: Lab, report: dict[str, Any], stdout: str, target: str) -> None:
    """Without `pulumi up`: `target`'s dump CronJob runs, a base backup of its new timeline is in its WAL bucket,
    its archiving reaches that bucket, and the next steps say what is missing until the other region returns."""
    namespace = lab.region(target).namespace
    for job in ("pg-dump", "restore-test"):
        cronjob = kube_workloads.get(lab.root, "cronjob", job, namespace)
        assert cronjob is not None and cronjob["spec"]["suspend"] is False, job
    target_outputs = bench_outputs(lab, target)
    s3 = s3_client(target_outputs)
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("protect", "protect.backup-jobs", "protect.base-backup", "protect.wal-archiving"):
        assert checks[name]["outcome"] == "pass", checks[name]
    segment = checks["protect.wal-archiving"]["detail"].split()[1]
    assert segment in wal.listing(s3, target_outputs.wal_bucket)
    bucket_url = checks["protect.base-backup"]["detail"].split("bucket ")[1]
    prefix = bucket_url.removeprefix(f"s3://{target_outputs.wal_bucket}/")
    label = s3.get_object(Bucket=target_outputs.wal_bucket, Key=prefix + "backup_label")["Body"].read().decode()
    # The base backup is of the new timeline: its start segment's timeline is the promoted one (2), not prod's 1.
    start, _ = parse_backup_label(label)
    assert int(start[:8], 16) >= 2, label
    assert "until prod returns: no standby" in stdout, stdout


# The lab's stand-in: 1 replica on the primary (one host port per node, lab/project.py), 0 on the standby.
BASELINE_APPLICATION = {"prod": {"replicas": 1, "available": 1}, "dr": {"replicas": 0, "available": 0}}
FAILED_OVER_APPLICATION = {"prod": {"replicas": 0, "available": 0}, "dr": {"replicas": 1, "available": 1}}


def replica_managers(lab: Lab, stack: str) -> list[str]:
    """Who owns the stand-in Deployment's spec.replicas in `stack`'s namespace (its managed fields)."""
    namespace = lab.region(stack).namespace
    args = ("get", "deployment", kube_workloads.SERVICE_APP, "-n", namespace, "-o", "json", "--show-managed-fields")
    fields = json.loads(kube.kubectl(lab.root, *args).stdout)["metadata"]["managedFields"]
    return [m["manager"] for m in fields if "f:replicas" in m.get("fieldsV1", {}).get("f:spec", {})]


def assert_application_moved(lab: Lab, report: dict[str, Any], target: str) -> None:
    """`target`'s Deployment at the primary's count, all available, set by drtopo's field manager through its own
    context; the other's at 0; the report names the region's own health endpoint (never the record) as UP."""
    assert end_state(lab)["application"] == (FAILED_OVER_APPLICATION if target == "dr" else BASELINE_APPLICATION)
    assert replica_managers(lab, target) == ["drtopo"]
    checks = {c["name"]: c for c in report["checks"]}
    health = checks["application"]["detail"]
    assert lab.region(target).service.gated_url + "/actuator/health -> 200 UP" in health, health
    assert checks["application-down"]["outcome"] == "pass", checks["application-down"]
    phase = report["measured"]["application"]
    assert phase["replicas"] == 1 and phase["seconds"] == pytest.approx(
        phase["rollout_seconds"] + phase["health_seconds"], abs=0.01
    )


def closed_journal(lab: Lab, where: str) -> dict[str, Any]:
    """The closed journal the report names: the shared copy in dr's configuration bucket, or a local file."""
    if not where.startswith("s3://"):
        return json.loads(Path(where).read_text())
    bucket, key = where.removeprefix("s3://").split("/", 1)
    assert bucket == bench_outputs(lab, "dr").config_bucket, where
    return json.loads(s3_client(bench_outputs(lab, "dr")).get_object(Bucket=bucket, Key=key)["Body"].read())


def assert_steps_ran(lab: Lab, report: dict[str, Any], steps: list[str], resumed: tuple[str, ...] = ()) -> None:
    """`steps` ran in this order in the report's timeline (`resumed` ones taken from an interrupted run's journal,
    the others run now), each with a passing check of its name, and the closed journal records each as done."""
    timeline = [s for s in report["measured"]["steps"] if s["step"] in steps]
    assert [s["step"] for s in timeline] == steps, report["measured"]["steps"]
    for record in timeline:
        if record["step"] in resumed:
            assert record.get("resumed") is True, record
        else:
            assert "resumed" not in record and record["seconds"] >= 0, record
    outcomes = {c["name"]: c["outcome"] for c in report["checks"]}
    assert {step: outcomes.get(step) for step in steps} == dict.fromkeys(steps, "pass"), report["checks"]
    journal = closed_journal(lab, report["measured"]["journal"])
    assert journal["closed_at"] and {s: journal["steps"].get(s, {}).get("ok") for s in steps} == dict.fromkeys(
        steps, True
    ), journal["steps"]


def test_unplanned_failover_after_sigkill_loses_only_a_tail_within_the_reported_lag(
    fresh_pg: Lab, state_env: dict[str, str], tmp_path: Path
) -> None:
    """The oracle is the writer's own order: every acknowledged row up to the newest one dr holds is on dr, the lost
    ones are exactly the tail after it, and their count fits the writer's rate over the lag promote reported."""
    writer = DnsFollowingWriter(fresh_pg)
    writer.start()
    wait_acks(writer, 100)
    kill_sent_at = time.time()  # prod dies after this instant and before died_at
    pid = fresh_pg.prod.postgres.kill()
    died_at = time.time()
    # The fault took effect: the postmaster is gone and prod answers no connection.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert server_state(fresh_pg, "prod") == {"down": True}
    proc = promote(fresh_pg, state_env, *DB_ONLY, "--json", tmp_path / "report.json")
    after = len(writer.acks)
    wait_acks(writer, after + 20)
    acks = writer.stop()

    assert proc.returncode == 0, proc.stderr
    measured = json.loads((tmp_path / "report.json").read_text())["measured"]
    assert measured["replica_lag_source"].startswith("primary unreachable")
    lag = measured["replica_lag_seconds"]
    assert isinstance(lag, (int, float)), measured

    on_prod = [a for a in acks if a.stack == "prod"]
    on_dr = [a for a in acks if a.stack == "dr"]
    assert on_prod and on_dr and acks == on_prod + on_dr, "the writer moved from prod to dr once"
    numbers = [int(a.key.removeprefix("writer-")) for a in acks]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    held = present(fresh_pg, "dr", [a.key for a in acks])
    assert {a.key for a in on_dr} <= held
    kept = [a.key in held for a in on_prod]
    newest = max(i for i, k in enumerate(kept) if k)  # the newest prod row the standby holds
    lost = on_prod[newest + 1 :]
    assert all(kept[: newest + 1]), "an acknowledged row before the newest one dr holds is missing on dr"
    assert not any(kept[newest + 1 :]), "the rows missing on dr are not a contiguous tail"
    rows_lost = len(lost)
    # The reported lag is at least how stale dr was when prod died: dr holds nothing acknowledged after `newest`
    # (the writer is the only client writing), its commit came before its acknowledgement, and prod died after the
    # kill was sent; so dr's staleness at the death is at least kill_sent_at - that acknowledgement. The slack is the
    # millisecond resolution of the server log's time stamps, which the bound's end of stream is read from.
    stale_at_death = kill_sent_at - on_prod[newest].at
    assert lag + 0.001 >= stale_at_death, (lag, stale_at_death)
    # Their count fits the writer's measured rate over that lag (slack: one interval's jitter, and a row in flight).
    rate = (len(on_prod) - 1) / (on_prod[-1].at - on_prod[0].at)
    slack_seconds = 0.25
    assert rows_lost <= rate * (lag + slack_seconds) + 1, (rows_lost, rate, lag)
    assert all(a.at <= died_at + slack_seconds for a in lost), "a row acknowledged after prod died"
    assert server_state(fresh_pg, "prod") == {"down": True}
    assert end_state(fresh_pg)["dns"] == FAILED_OVER_DNS


def tiny_rpo_project(lab: Lab, tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(lab.project_dir, project)
    with (project / "Pulumi.dr.yaml").open("a") as f:
        f.write("  drtopo:objectives:\n    regionFailure:\n      rtoMinutes: 240\n      rpoMinutes: 0.005\n")
    return project


def test_refuses_when_lag_is_beyond_the_rpo_and_changes_nothing(
    fresh_pg: Lab, state_env: dict[str, str], tmp_path: Path
) -> None:
    project = tiny_rpo_project(fresh_pg, tmp_path)
    with connect(fresh_pg, "prod") as prod, connect(fresh_pg, "dr") as dr:
        prod.execute(
            "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation)"
            " VALUES ('before-pause', 'ORDER', 'x', 'CREATE')"
        )
        wait_replayed(prod, dr)
        dr.execute("SELECT pg_wal_replay_pause()")
        prod.execute(
            "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation)"
            " VALUES ('while-paused', 'ORDER', 'x', 'CREATE')"
        )
        time.sleep(0.6)
        before = end_state(fresh_pg)
        project_before = {p.name: p.read_text() for p in project.iterdir() if p.is_file()}

        proc = promote(fresh_pg, {**state_env, "DRTOPO_PROJECT_DIR": str(project)}, *DB_ONLY)

        assert proc.returncode == 3, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("refused: replica lag of dr is") and "RPO of 0.3 s" in last
        assert end_state(fresh_pg) == before
        assert {p.name: p.read_text() for p in project.iterdir() if p.is_file()} == project_before
        assert not list((tmp_path / "journal").glob("promote-dr*.json"))
        dr.execute("SELECT pg_wal_replay_resume()")


def wait_replayed(prod, dr, timeout: float = 10) -> None:
    target = prod.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    while not dr.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0]:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_refuses_when_the_old_primary_is_writable_and_cannot_be_fenced(
    fresh_pg: Lab, state_env: dict[str, str], tmp_path: Path
) -> None:
    password = os.environ["PGPASSWORD"]
    with connect(fresh_pg, "prod") as prod:
        prod.execute(f"CREATE ROLE app LOGIN NOSUPERUSER PASSWORD '{password}'")
    folder = tmp_path / "outputs"
    folder.mkdir()
    shutil.copy(fresh_pg.dr.outputs_path, folder / "dr.json")
    prod_outputs = json.loads(fresh_pg.prod.outputs_path.read_text())
    (folder / "prod.json").write_text(json.dumps({**prod_outputs, "dbUser": "app"}))
    before = end_state(fresh_pg)

    proc = promote(fresh_pg, state_env, *DB_ONLY, outputs_file=folder / "dr.json")

    assert proc.returncode == 3, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("refused: old primary prod is reachable and could not be fenced")
    assert "permission denied" in last
    assert end_state(fresh_pg) == before
    assert write_refused(fresh_pg, "prod") == ""


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown-stack", "stack 'qa' has no Pulumi.qa.yaml"),
        ("missing-key", "key 'hostedZoneId' is missing"),
        ("unreadable", "is unreadable"),
        ("no-file", "does not exist"),
        ("peer-missing-key", "key 'dbArn' is missing"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    lab: Lab, state_env: dict[str, str], tmp_path: Path, case: str, expected: str
) -> None:
    folder = tmp_path / "outputs"
    folder.mkdir()
    for stack in ("prod", "dr"):
        shutil.copy(lab.region(stack).outputs_path, folder / f"{stack}.json")
    args = ["--stack", "dr", "--outputs", str(folder / "dr.json")]
    if case == "unknown-stack":
        args[1] = "qa"
    elif case in ("missing-key", "peer-missing-key"):
        stack, key = ("dr", "hostedZoneId") if case == "missing-key" else ("prod", "dbArn")
        data = json.loads((folder / f"{stack}.json").read_text())
        del data[key]
        (folder / f"{stack}.json").write_text(json.dumps(data))
    elif case == "unreadable":
        (folder / "dr.json").write_text("{not json")
    else:
        args[3] = str(folder / "absent.json")
    before = end_state(lab)

    proc = run_cli("promote", *args, *DB_ONLY, env=state_env)

    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert end_state(lab) == before
    assert not list((tmp_path / "journal").glob("*.json"))
    assert len(list((tmp_path / "journal" / "logs").glob("promote-*.log"))) == 1


def test_dry_run_prints_the_plan_and_changes_nothing(fresh_pg: Lab, state_env: dict[str, str], tmp_path: Path) -> None:
    before = end_state(fresh_pg)

    proc = promote(fresh_pg, state_env, "--dry-run")

    assert proc.returncode == 0, proc.stderr
    for step in ("fence", "drain", "promote", "consumer-group", "application", "dns", "application-down", "roles"):
        assert f". {step} " in proc.stdout
    # The replica changes, read from each region's own API.
    assert "scale dr's interface-exception-collector 0 -> 1 replicas through dr's own Kubernetes API" in proc.stdout
    assert "scale prod's interface-exception-collector 1 -> 0 replicas through prod's own API" in proc.stdout
    assert "Pulumi.prod.yaml: role standby, database.generation 1, retiredGenerations [0]" in proc.stdout
    assert "Pulumi.dr.yaml: role primary, database.generation 0" in proc.stdout
    assert end_state(fresh_pg) == before
    assert before["servers"]["dr"]["in_recovery"] is True
    assert not list((tmp_path / "journal").glob("*.json"))


def test_crash_between_promotion_and_dns_then_rerun_ends_like_an_uninterrupted_run(
    fresh_pg: Lab, tmp_path: Path
) -> None:
    assert promote(fresh_pg, {"DRTOPO_STATE_DIR": str(tmp_path / "a")}, *DB_ONLY).returncode == 0
    uninterrupted = end_state(fresh_pg)

    fresh_pg.reset_postgres()
    env = {"DRTOPO_STATE_DIR": str(tmp_path / "b")}
    crashed = promote(fresh_pg, {**env, "DRTOPO_CRASH_AFTER": "promote"}, *DB_ONLY)
    assert crashed.returncode == -signal.SIGKILL
    midway = end_state(fresh_pg)
    assert midway["servers"]["dr"]["in_recovery"] is False
    assert midway["dns"] == BASELINE_DNS
    assert "drtopo:role: standby" in midway["stack_files"]["dr"]
    assert (tmp_path / "b" / "promote-dr.json").is_file()

    resumed = promote(fresh_pg, env, *DB_ONLY, "--json", tmp_path / "resumed.json")

    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((tmp_path / "resumed.json").read_text())
    assert report["measured"]["resumed"] is True
    assert_steps_ran(
        fresh_pg,
        report,
        ["fence", "drain", "promote", "application", "dns", "application-down", "roles", "protect"],
        resumed=("fence", "drain", "promote"),
    )
    assert same_outcome(end_state(fresh_pg), uninterrupted)
    assert not (tmp_path / "b" / "promote-dr.json").exists()


def same_outcome(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """End states of two runs on two builds of the lab: equal but for the emulator's ids of health checks (a new build
    seeds new ones), which name the same records."""

    def without_ids(state: dict[str, Any]) -> dict[str, Any]:
        raw = dict(state.get("dns_raw") or {})
        raw["records"] = {k: {**v, "health_check": None} for k, v in (raw.get("records") or {}).items()}
        return {**state, "dns_raw": raw}

    return without_ids(a) == without_ids(b)


def test_promoting_the_primary_is_bad_input(fresh_pg: Lab, state_env: dict[str, str]) -> None:
    before = end_state(fresh_pg)
    proc = run_cli("promote", "--stack", "prod", "--outputs", fresh_pg.prod.outputs_path, env=state_env)
    assert proc.returncode == 2
    assert "stack prod is already primary" in proc.stderr.strip().splitlines()[-1]
    assert end_state(fresh_pg) == before


def test_consumer_group_moves_to_translated_offsets_not_latest(
    fresh_pg: Lab, state_env: dict[str, str], tmp_path: Path
) -> None:
    assert kafka_running(fresh_pg), "the lab's Kafka is not running: the consumer-group step cannot be shown"
    settings = load_settings("dr", fresh_pg.project_dir)
    group, topic = settings.kafka.consumer_group, settings.kafka.mirrored_topics[0]
    with collectors_paused(fresh_pg):
        expected = consume_and_wait_for_checkpoints(fresh_pg, topic, group, cluster_alias(settings.peer_region))

        proc = promote(fresh_pg, state_env, "--json", tmp_path / "report.json")

        assert proc.returncode == 0, proc.stderr
        applied = applied_offsets(json.loads((tmp_path / "report.json").read_text()))
        assert {tp: applied[tp] for tp in expected} == expected
        # The application promote scaled up in dr resumes there: it reads from those offsets on, never skips.
        now = committed_offsets(fresh_pg.dr.kafka.bootstrap, group)
        assert all(now.get(tp, off) >= off for tp, off in expected.items())
        ends = end_offsets(fresh_pg.dr.kafka.bootstrap, [topic])
        assert any(expected[tp] < ends[tp] for tp in expected), "translated offsets should not be the latest"
        check = next(
            c for c in json.loads((tmp_path / "report.json").read_text())["checks"] if c["name"] == "consumer-group"
        )
        # Earlier drills may have left checkpoints of the same group for other topics: those move too.
        moved = re.search(r"(\d+) partition\(s\)", check["detail"])
        assert check["ok"] and moved and int(moved.group(1)) >= len(expected), check["detail"]


def test_rds_fence_attaches_a_read_only_parameter_group_and_reboots(lab: Lab) -> None:
    """The RDS half of fencing against the emulator (which cannot make a server read-only: that half is the SQL one)."""
    rds_outputs = load_outputs(lab.prod.outputs_path, "prod").model_copy(update={"self_managed": None})
    rds = rds_platform.rds_client(rds_outputs)
    original = rds.describe_db_instances(DBInstanceIdentifier=rds_outputs.db_instance_id)["DBInstances"][0]
    # The program's parameter group on the instance (the lab leaves it off: moto copies a cross-region source's
    # group name into the replica's region and then cannot find it there).
    settings = load_settings("prod", lab.project_dir)
    program_group = naming.parameter_group_name(settings)
    rds.create_db_parameter_group(
        DBParameterGroupName=program_group,
        DBParameterGroupFamily=parameter_family(settings.database.engine_version),
        Description="the program's group",
    )
    rds.modify_db_parameter_group(
        DBParameterGroupName=program_group,
        Parameters=[
            {"ParameterName": p["name"], "ParameterValue": p["value"], "ApplyMethod": "pending-reboot"}
            for p in parameters(settings.database)
        ],
    )
    rds.modify_db_instance(
        DBInstanceIdentifier=rds_outputs.db_instance_id, DBParameterGroupName=program_group, ApplyImmediately=True
    )
    try:
        result = rds_platform.fence_rds(rds_outputs)

        group = f"{rds_outputs.db_instance_id}-fenced"
        assert group in result["method"]
        params = rds.describe_db_parameters(DBParameterGroupName=group)["Parameters"]
        assert {p["ParameterName"]: p.get("ParameterValue") for p in params}["default_transaction_read_only"] == "1"
        attached = rds.describe_db_instances(DBInstanceIdentifier=rds_outputs.db_instance_id)["DBInstances"][0]
        assert [g["DBParameterGroupName"] for g in attached["DBParameterGroups"]] == [group]
        # The fence keeps what the program's group enforces: TLS only and archiving at least once a minute.
        values = {p["ParameterName"]: p.get("ParameterValue") for p in params}
        assert values["rds.force_ssl"] == "1" and values["archive_timeout"] == "60"
        assert {"rds.force_ssl", "archive_timeout"} <= set(result["kept_parameters"])
        assert result["status_before_reboot"] in ("pending-reboot", "in-sync")
    finally:
        rds.modify_db_instance(
            DBInstanceIdentifier=rds_outputs.db_instance_id,
            DBParameterGroupName=original["DBParameterGroups"][0]["DBParameterGroupName"],
            ApplyImmediately=True,
        )


# A pod template no node matches, as a broken chart change would leave it: the scale-up never rolls out.
UNSCHEDULABLE = '{"spec":{"template":{"spec":{"nodeSelector":{"drtopo.test/no-such-node":"true"}}}}}'
SCHEDULABLE = '[{"op":"remove","path":"/spec/template/spec/nodeSelector"}]'


def _start_seconds(lab: Lab, stack: str, seconds: float) -> None:
    """`drtopo:application.startSeconds` of the project copy (the next test's fresh_pg writes it back)."""
    path = lab.project_dir / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["drtopo:application"]["startSeconds"] = seconds
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_dns_waits_for_a_healthy_application_unless_overridden(
    fresh_pg: Lab, state_env: dict[str, str], tmp_path: Path
) -> None:
    """dr's application cannot come up (its pods fit no node): promote promotes, fails the application step and
    leaves DNS on prod, exit 1 with the journal open; the rerun with --skip-app-check moves DNS and says so."""
    namespace = fresh_pg.dr.namespace
    _start_seconds(fresh_pg, "dr", 6)
    deployment = f"deployment/{kube_workloads.SERVICE_APP}"
    kube.kubectl(fresh_pg.root, "patch", deployment, "-n", namespace, "--type=merge", "-p", UNSCHEDULABLE)
    try:
        held = promote(fresh_pg, state_env, *DB_ONLY, "--json", tmp_path / "held.json")
        after_held = end_state(fresh_pg)
        report = json.loads((tmp_path / "held.json").read_text())
        overridden = promote(fresh_pg, state_env, *DB_ONLY, "--skip-app-check", "--json", tmp_path / "over.json")
        over = json.loads((tmp_path / "over.json").read_text())
    finally:
        kube.kubectl(fresh_pg.root, "patch", deployment, "-n", namespace, "--type=json", "-p", SCHEDULABLE)

    assert held.returncode == 1, held.stderr
    assert "application, dns, application-down" in held.stderr and "rerun the same command" in held.stderr
    assert after_held["servers"]["dr"]["in_recovery"] is False  # promoted: past the point of no return
    assert after_held["dns"] == BASELINE_DNS  # but DNS did not move to an application that is not there
    assert after_held["application"]["prod"] == {"replicas": 1, "available": 1}  # nor did prod's go down
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["application"]["outcome"] == "fail" and "not rolled out within 6 s" in checks["application"]["detail"]
    assert checks["dns"]["outcome"] == "fail" and "--skip-app-check" in checks["dns"]["detail"]
    assert report["measured"]["left_to_do"][:3] == ["application", "dns", "application-down"]
    assert (
        checks["application-down"]["outcome"] == "skip"
        and "dns did not complete" in checks["application-down"]["detail"]
    )

    assert overridden.returncode == 0, overridden.stderr
    checks = {c["name"]: c for c in over["checks"]}
    assert checks["application"]["outcome"] == "skip" and "--skip-app-check" in checks["application"]["detail"]
    assert (
        checks["dns"]["outcome"] == "pass" and "application check skipped (--skip-app-check)" in checks["dns"]["detail"]
    )
    assert end_state(fresh_pg)["dns"] == FAILED_OVER_DNS
