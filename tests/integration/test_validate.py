"""`python -m scripts.validate` on the lab: each check passing, then failing for a real fault, then restored.

Before any failover dr is not a recovered stack (not primary, no write accepted) while prod passes those checks.
The application (prod, the primary): an authenticated API call, a probe event through Kafka seen as its row, every
consumed event's row present, metrics, memory and the runbook's query time; each failing (a wrong token, limits no
service meets, a metrics path that is not Prometheus text, a consumed event's row deleted), and after
`restore kafka-failover` the same checks following the application onto the backup cluster.
Faults: rows the standby has not replayed (WAL replay paused while prod changes: one inserted, one deleted, one
updated row), a disaster time beyond the RPO objective, a stopped service, a latency limit no service can meet, a
dropped table and duplicated transactions, and on Kafka a deleted topic, MirrorMaker stopped while records are
produced, and a consumer-group offset outside the log. Every fault is undone by the test that made it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from drtopo.checks.application import http_get, parse_prometheus
from drtopo.kafka.admin import Partition, committed_offsets, watermarks
from drtopo.kafka.lag import mirrormaker_lag
from drtopo.kafka.offsets import read_checkpoints
from drtopo.mm2_properties import cluster_alias
from drtopo.settings import load_settings
from lab.core import Lab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
ROWS = 1000


def primary(lab: Lab) -> psycopg.Connection:
    return psycopg.connect(lab.prod.postgres.conninfo(), autocommit=True)


def standby(lab: Lab) -> psycopg.Connection:
    return psycopg.connect(lab.dr.postgres.conninfo(), autocommit=True)


def wait_replayed(lab: Lab, timeout: float = 30) -> None:
    with primary(lab) as prod, standby(lab) as dr:
        (lsn,) = prod.execute("SELECT pg_current_wal_lsn()").fetchone()
        deadline = time.monotonic() + timeout
        while not dr.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            assert time.monotonic() < deadline, f"dr did not replay up to {lsn}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def seeded(lab: Lab) -> Lab:
    """A fresh prod/dr pair whose exceptions table holds ROWS records, replayed on dr."""
    lab.reset_postgres()
    with primary(lab) as prod:
        prod.execute(
            "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation, status) "
            "SELECT 'txn-' || i, 'ORDER', 'rejected', 'CREATE_ORDER', (ARRAY['NEW', 'RESOLVED'])[1 + i %% 2] "
            "FROM generate_series(1, %s) i",
            (ROWS,),
        )
        prod.execute("INSERT INTO retry_attempts (exception_id, attempt_number) SELECT id, 1 FROM interface_exceptions")
    wait_replayed(lab)
    # dr's stand-in running as a warm standby has it (the shipped pilot light keeps it at 0 until promote): these
    # checks judge a running service in dr's own region.
    lab.dr.service.start()
    return lab


def validate(
    lab: Lab,
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stack: str = "dr",
    expect: str | None = "standby",
) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    """Run the CLI on `stack` (dr, checked as the standby it is unless `expect` says otherwise; None: the command's
    default, post-recovery); returns exit code, the JSON report and its checks by name."""
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    command = ["-m", "scripts.validate", "--stack", stack, "--outputs", str(lab.region(stack).outputs_path)]
    command += ["--expect", expect] if expect else []
    proc = subprocess.run(
        [sys.executable, *command, "--json", str(report), *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(report.read_text())
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
    return proc.returncode, data, {c["name"]: c for c in data["checks"]}


NO_KAFKA = ("--skip", "kafka")


def test_recovered_standby_passes_database_service_and_comparison_checks(seeded: Lab, tmp_path: Path) -> None:
    since = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    code, report, checks = validate(seeded, tmp_path, "--against", "prod", "--since", since, *NO_KAFKA)
    assert code == 0 and report["ok"], [c for c in report["checks"] if not c["ok"]]
    assert checks["db.table.interface_exceptions"]["value"] == ROWS
    assert checks["db.table.retry_attempts"]["value"] == ROWS
    assert checks["db.unique_transactions"]["value"] == ROWS
    assert report["measured"]["status_breakdown"] == {"NEW": ROWS // 2, "RESOLVED": ROWS // 2}
    settings = load_settings("dr", seeded.project_dir)
    assert 0 <= checks["db.rpo"]["value"] < 60
    assert checks["db.rpo"]["limit"] == settings.objectives.region_failure.rpo_seconds
    assert checks["service.health"]["value"] == "UP"
    assert checks["service.latency_p95"]["value"] <= checks["service.latency_p95"]["limit"]
    assert checks["service.latency_p95"]["limit"] == settings.service.latency_p95_ms
    assert checks["compare.keys.interface_exceptions"]["value"] == 0
    assert checks["compare.rows.retry_attempts"]["value"] == ROWS


def test_the_standby_before_any_failover_is_not_a_recovered_stack(seeded: Lab, tmp_path: Path) -> None:
    """What an on-call engineer runs after a failover, run before one: dr is not primary and takes no write."""
    code, report, checks = validate(seeded, tmp_path, "--skip", "kafka", expect=None)
    assert code == 1 and not report["ok"]
    role = checks["stack.role"]
    assert not role["ok"] and (role["value"], role["limit"]) == ("standby", "primary")
    assert role["detail"].startswith("dr is not primary: it is standby"), role
    probe = checks["db.write_probe"]
    assert not probe["ok"] and "read-only transaction" in probe["detail"], probe
    # Route53 answers prod: the record is checked apart from dr's own region, which answers healthy.
    assert not checks["service.record"]["ok"] and checks["service.record"]["value"] == "us-east-1"
    assert checks["service.health"]["ok"] and seeded.dr.service.gated_url in checks["service.health"]["detail"]


def test_the_primary_passes_the_recovery_checks_and_the_probe_leaves_nothing(seeded: Lab, tmp_path: Path) -> None:
    with primary(seeded) as prod:
        before = prod.execute(
            "SELECT count(*), (SELECT last_value FROM interface_exceptions_id_seq) FROM interface_exceptions"
        ).fetchone()
    # Without the application's checks: their probe event leaves its row by design (the runbook's step 5).
    code, report, checks = validate(
        seeded, tmp_path, "--skip", "kafka", "--skip", "application", stack="prod", expect=None
    )
    assert code == 0, [c for c in report["checks"] if not c["ok"]]
    assert checks["stack.role"]["value"] == "primary" and "prod is primary" in checks["stack.role"]["detail"]
    assert checks["db.write_probe"]["ok"] and "rolled back" in checks["db.write_probe"]["detail"]
    assert checks["service.record"]["value"] == "us-east-1"
    with primary(seeded) as prod:
        after = prod.execute(
            "SELECT count(*), (SELECT last_value FROM interface_exceptions_id_seq) FROM interface_exceptions"
        ).fetchone()
        assert prod.execute("SELECT count(*) FROM interface_exceptions WHERE id < 0").fetchone() == (0,)
    assert after == before


def test_rows_the_standby_lacks_are_listed_as_missing_extra_changed(seeded: Lab, tmp_path: Path) -> None:
    with standby(seeded) as dr, primary(seeded) as prod:
        dr.execute("SELECT pg_wal_replay_pause()")
        try:
            (new_id,) = prod.execute(
                "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation) "
                "VALUES ('txn-late', 'ORDER', 'late', 'CREATE_ORDER') RETURNING id"
            ).fetchone()
            prod.execute("DELETE FROM interface_exceptions WHERE id = 17")
            prod.execute("UPDATE interface_exceptions SET status = 'ESCALATED' WHERE id = 500")
            code, report, checks = validate(seeded, tmp_path, "--against", "prod", "--skip", "service", *NO_KAFKA)
        finally:
            dr.execute("SELECT pg_wal_replay_resume()")
    assert code == 1
    assert not checks["compare.keys.interface_exceptions"]["ok"]
    assert checks["compare.keys.interface_exceptions"]["value"] == 3
    (ie,) = [d for d in report["measured"]["compare"] if d["table"] == "interface_exceptions"]
    # prod is the reference: its new row is missing on dr, its deleted row still extra there, its update changed.
    assert (ie["missing"], ie["extra"], ie["changed"]) == ([new_id], [17], [500])
    assert checks["compare.rows.interface_exceptions"]["value"] == checks["compare.rows.interface_exceptions"]["limit"]
    assert not checks["compare.keys.retry_attempts"]["ok"]  # the delete cascaded to retry attempt of id 17
    wait_replayed(seeded)
    code, _, checks = validate(
        seeded, tmp_path, "--against", "prod", "--skip", "service", "--skip", "database", *NO_KAFKA
    )
    assert code == 0 and checks["compare.keys.interface_exceptions"]["ok"]


def test_a_disaster_time_beyond_the_objective_fails_the_rpo(seeded: Lab, tmp_path: Path) -> None:
    since = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    code, _, checks = validate(seeded, tmp_path, "--since", since, "--skip", "service", *NO_KAFKA)
    assert code == 1
    assert not checks["db.rpo"]["ok"] and checks["db.rpo"]["value"] > 3500
    long_ago = "2000-01-01T00:00:00Z"
    code, _, checks = validate(seeded, tmp_path, "--since", long_ago, "--skip", "service", *NO_KAFKA)
    assert code == 1 and "no record at or before" in checks["db.rpo"]["detail"]


def test_a_stopped_service_fails_health(seeded: Lab, tmp_path: Path) -> None:
    seeded.dr.service.stop()
    try:
        code, _, checks = validate(seeded, tmp_path, "--skip", "database", *NO_KAFKA)
    finally:
        seeded.dr.service.start()
    assert code == 1
    assert not checks["service.health"]["ok"] and "unreachable" in checks["service.health"]["detail"]
    assert "service.latency_p95" not in checks
    code, _, checks = validate(seeded, tmp_path, "--skip", "database", *NO_KAFKA)
    assert code == 0 and checks["service.health"]["ok"]


def test_the_latency_limit_comes_from_settings(seeded: Lab, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(seeded.project_dir, project)
    stack_file = project / "Pulumi.dr.yaml"
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["drtopo:service"] = {"latencyP95Ms": 0.001}
    stack_file.write_text(yaml.safe_dump(document))
    code, report, checks = validate(
        seeded, tmp_path, "--skip", "database", *NO_KAFKA, env={"DRTOPO_PROJECT_DIR": str(project)}
    )
    assert code == 1
    assert not checks["service.latency_p95"]["ok"] and checks["service.latency_p95"]["limit"] == 0.001
    assert report["measured"]["latency_ms"]["n"] == 20


def test_a_dropped_table_and_duplicated_transactions_fail(seeded: Lab, tmp_path: Path) -> None:
    with primary(seeded) as prod:
        rows = prod.execute("SELECT * FROM retry_attempts ORDER BY id").fetchall()
        prod.execute("DROP TABLE retry_attempts")
        prod.execute("ALTER TABLE interface_exceptions DROP CONSTRAINT interface_exceptions_transaction_id_key")
        prod.execute(
            "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation) "
            "VALUES ('txn-5', 'ORDER', 'twice', 'CREATE_ORDER')"
        )
    wait_replayed(seeded)
    try:
        code, _, checks = validate(seeded, tmp_path, "--skip", "service", *NO_KAFKA)
    finally:
        with primary(seeded) as prod:
            prod.execute("DELETE FROM interface_exceptions WHERE exception_reason = 'twice'")
            prod.execute("ALTER TABLE interface_exceptions ADD UNIQUE (transaction_id)")
            prod.execute((REPO / "lab" / "schema.sql").read_text())
            with prod.cursor() as cur:
                cur.executemany(f"INSERT INTO retry_attempts VALUES ({', '.join(['%s'] * len(rows[0]))})", rows)
            prod.execute("SELECT setval(pg_get_serial_sequence('retry_attempts', 'id'), max(id)) FROM retry_attempts")
        wait_replayed(seeded)
    assert code == 1
    assert not checks["db.table.retry_attempts"]["ok"] and checks["db.table.retry_attempts"]["detail"] == (
        "table is missing"
    )
    assert not checks["db.unique_transactions"]["ok"]
    assert (checks["db.unique_transactions"]["value"], checks["db.unique_transactions"]["limit"]) == (ROWS, ROWS + 1)


# ---- Kafka ------------------------------------------------------------------------------------------------------

KAFKA_ONLY = ("--skip", "service", "--skip", "database")


@pytest.fixture
def kafka(lab: Lab) -> Lab:
    """The lab, whose Kafka clusters always run: one that is down fails the test, never skips it."""
    servers = lab.status()["servers"]
    assert all(servers.get(f"kafka-{s}", {}).get("running") for s in ("prod", "dr")), "the lab's Kafka is not running"
    return lab


def _mirror_settled(lab: Lab, timeout: float = 90) -> None:
    kafka = load_settings("dr", lab.project_dir).kafka
    # As validate measures it: the mirror's own offset.lag.max (the lab's 10), not the product default (100).
    topics, cap = kafka.mirrored_topics, kafka.mirror.offset_lag_max
    deadline = time.monotonic() + timeout
    while any(mirrormaker_lag(lab.prod.kafka.bootstrap, lab.dr.kafka.bootstrap, topics, offset_lag_max=cap).values()):
        assert time.monotonic() < deadline, "MirrorMaker 2 did not catch up"
        time.sleep(1)


def test_kafka_checks_pass_on_a_mirrored_standby(kafka: Lab, tmp_path: Path) -> None:
    _mirror_settled(kafka)
    code, report, checks = validate(kafka, tmp_path, *KAFKA_ONLY)
    assert code == 0, [c for c in report["checks"] if not c["ok"]]
    assert checks["kafka.topics"]["value"] == checks["kafka.topics"]["limit"] == 8
    assert checks["kafka.mirror_lag.OrderRejected"]["value"] == 0
    assert checks["kafka.group_offsets"]["value"] == 0
    assert checks["kafka.mirror_flow"]["ok"] and "us-east-1->us-west-2" in checks["kafka.mirror_flow"]["detail"]


def test_a_dropped_topic_fails(kafka: Lab, tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    # A topic with nothing on prod: MirrorMaker 2 goes on from its own source offsets, so a recreated topic that had
    # records would stay short of them for good (real lag, and the group's offsets beyond its log) for the tests after.
    declared = load_settings("dr", kafka.project_dir).kafka.topics
    ends = watermarks(kafka.prod.kafka.bootstrap, [t.name for t in declared])
    empty = [t for t in declared if all(high == 0 for tp, (_low, high) in ends.items() if tp.topic == t.name)]
    assert empty, "every declared topic has records on prod: none can be dropped and recreated as it was"
    topic = empty[-1]
    admin = AdminClient({"bootstrap.servers": kafka.dr.kafka.bootstrap})
    # MirrorMaker would recreate the mirrored topic within its refresh interval: lose it while MirrorMaker is down.
    kafka.stop_mirrormaker()
    admin.delete_topics([topic.name], operation_timeout=30)[topic.name].result()
    try:
        code, _, checks = validate(kafka, tmp_path, *KAFKA_ONLY)
    finally:
        kafka.start_mirrormaker()
        deadline = time.monotonic() + 30
        while topic.name not in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
            futures = admin.create_topics([NewTopic(topic.name, topic.partitions, 1)], operation_timeout=30)
            try:
                futures[topic.name].result()
            except Exception:  # still being deleted: retry until the name is free
                time.sleep(1)
    assert code == 1
    assert not checks["kafka.topics"]["ok"] and topic.name in checks["kafka.topics"]["detail"]
    assert topic.name in admin.list_topics(timeout=10).topics, "the dropped topic was not recreated within 30 s"


def test_mirrormaker_stopped_lets_lag_grow(kafka: Lab, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    kafka.stop_mirrormaker()
    try:
        producer = Producer({"bootstrap.servers": kafka.prod.kafka.bootstrap})
        for i in range(150):
            producer.produce("OrderRejected", key=f"k{i}", value=b"{}")
        assert producer.flush(30) == 0
        code, report, checks = validate(kafka, tmp_path, *KAFKA_ONLY)
    finally:
        kafka.start_mirrormaker()
    assert code == 1
    lag = checks["kafka.mirror_lag.OrderRejected"]
    assert not lag["ok"] and lag["value"] >= 150 and lag["limit"] == 100
    assert not checks["kafka.mirror_flow"]["ok"] and "RUNNING" not in checks["kafka.mirror_flow"]["detail"]
    assert report["measured"]["mirror_lag_records"]["OrderRejected"] >= 150
    _mirror_settled(kafka)
    code, _, checks = validate(kafka, tmp_path, *KAFKA_ONLY)
    assert checks["kafka.mirror_lag.OrderRejected"]["ok"]


def test_a_group_offset_outside_the_log_fails(kafka: Lab, tmp_path: Path) -> None:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    group = load_settings("dr", kafka.project_dir).kafka.consumer_group
    bootstrap = kafka.dr.kafka.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    before = committed_offsets(bootstrap, group)
    partition = Partition("OrderCancelled", 0)
    _low, high = watermarks(bootstrap, [partition.topic])[partition]
    beyond = TopicPartition(partition.topic, partition.partition, high + 1000)
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [beyond])])[group].result()
    try:
        code, _, checks = validate(kafka, tmp_path, *KAFKA_ONLY)
    finally:
        if before:  # back to the committed offset, or to the end when the group never committed this partition
            original = TopicPartition(partition.topic, partition.partition, before.get(partition, high))
            admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [original])])[group].result()
        else:
            admin.delete_consumer_groups([group])[group].result()
    assert code == 1
    offsets = checks["kafka.group_offsets"]
    assert not offsets["ok"] and offsets["value"] == 1 and "OrderCancelled-0" in offsets["detail"]


# ---- the application (prod, the primary) ---------------------------------------------------------------------------
APPLICATION_ONLY = ("--skip", "service", "--skip", "kafka", "--skip", "compare")
APPLICATION_CHECKS = (
    "service.api_auth",
    "service.processing",
    "kafka.consistency",
    "kafka.duplicates",
    "service.metrics",
    "service.memory",
    "db.query_time",
)


def with_service(lab: Lab, tmp_path: Path, **service: object) -> dict[str, str]:
    """The env of a project copy whose prod stack sets `drtopo:service` to `service`."""
    project = tmp_path / f"project-{time.monotonic_ns()}"
    shutil.copytree(lab.project_dir, project)
    stack_file = project / "Pulumi.prod.yaml"
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["drtopo:service"] = service
    stack_file.write_text(yaml.safe_dump(document))
    return {"DRTOPO_PROJECT_DIR": str(project)}


@pytest.fixture(scope="module")
def fresh_collector(lab: Lab) -> Lab:
    """prod's collector restarted once: `kafka.duplicates` counts re-reads since the service started (as a real
    application's counter does; a failover restarts it), and the lab's stand-in may have lived through the earlier
    modules' failovers, each putting its group back at translated offsets that trail."""
    lab.prod.service.stop()
    lab.prod.service.start()
    return lab


def validate_prod(lab: Lab, tmp_path: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    return validate(lab, tmp_path, *APPLICATION_ONLY, env=env, stack="prod", expect=None)


@pytest.mark.usefixtures("fresh_collector")
def test_the_primary_passes_the_application_checks(kafka: Lab, tmp_path: Path) -> None:
    # The first run's probe is a consumed event the second run's consistency check counts (once committed).
    validate_prod(kafka, tmp_path)
    code, report, checks = validate_prod(kafka, tmp_path)
    assert code == 0, [c for c in report["checks"] if c["outcome"] != "pass"]
    assert all(checks[name]["outcome"] == "pass" for name in APPLICATION_CHECKS), checks
    assert checks["service.processing"]["value"] <= checks["service.processing"]["limit"] == 30
    assert checks["kafka.consistency"]["value"] == 0 and report["measured"]["consistency"]["events"] >= 1
    assert checks["service.metrics"]["value"] > 0
    assert report["measured"]["application_kafka"]["bootstrap"] == kafka.prod.kafka.gated_bootstrap


# Each fault of the table fails its check (and leaves the lab as it was).
APPLICATION_FAULTS = [
    pytest.param({"processingLimitSeconds": 2}, {"SERVICE_API_TOKEN": "not-the-token"}, "service.api_auth", id="token"),
    pytest.param({"processingLimitSeconds": 0.001}, {}, "service.processing", id="processing-limit"),
    pytest.param({"metricsPath": "/actuator/health"}, {}, "service.metrics", id="not-prometheus"),
    pytest.param({"memoryLimitMb": 0.001}, {}, "service.memory", id="memory-limit"),
    pytest.param({"dbQueryLimitMs": 0.0001}, {}, "db.query_time", id="query-limit"),
]


@pytest.mark.usefixtures("fresh_collector")
@pytest.mark.parametrize(("service", "env", "failing"), APPLICATION_FAULTS)
def test_an_application_fault_fails_its_check(
    kafka: Lab, tmp_path: Path, service: dict[str, object], env: dict[str, str], failing: str
) -> None:
    code, _report, checks = validate_prod(kafka, tmp_path, {**with_service(kafka, tmp_path, **service), **env})
    assert code == 1
    assert checks[failing]["outcome"] == "fail", checks[failing]


@pytest.mark.usefixtures("fresh_collector")
def test_without_a_token_the_api_checks_are_skipped_never_passed(kafka: Lab, tmp_path: Path) -> None:
    code, _report, checks = validate_prod(kafka, tmp_path, {"SERVICE_API_TOKEN": ""})
    assert checks["service.api_auth"]["outcome"] == checks["service.processing"]["outcome"] == "skip"
    assert "SERVICE_API_TOKEN" in checks["service.api_auth"]["detail"]
    code, _report, _checks = validate(
        kafka, tmp_path, *APPLICATION_ONLY, "--strict", env={"SERVICE_API_TOKEN": ""}, stack="prod", expect=None
    )
    assert code == 1


@pytest.mark.usefixtures("fresh_collector")
def test_a_consumed_event_without_its_row_fails_the_consistency(kafka: Lab, tmp_path: Path) -> None:
    code, report, checks = validate_prod(kafka, tmp_path)  # its probe is a consumed event with a row
    assert code == 0, [c for c in report["checks"] if c["outcome"] != "pass"]
    probe = re.search(r"probe (drtopo-probe-\S+)", checks["service.processing"]["detail"])
    assert probe
    txid = probe.group(1)
    with primary(kafka) as prod:
        (saved,) = prod.execute(
            "SELECT row_to_json(t)::text FROM interface_exceptions t WHERE transaction_id = %s", (txid,)
        ).fetchone()
        prod.execute("DELETE FROM interface_exceptions WHERE transaction_id = %s", (txid,))
    try:
        code, report, checks = validate_prod(kafka, tmp_path)
    finally:
        with primary(kafka) as prod:
            prod.execute(
                "INSERT INTO interface_exceptions SELECT * FROM json_populate_record(NULL::interface_exceptions, %s)",
                (saved,),
            )
    assert code == 1
    consistency = checks["kafka.consistency"]
    assert consistency["outcome"] == "fail" and consistency["value"] >= 1 and txid in consistency["detail"]
    assert txid in report["measured"]["consistency"]["missing"]


def _restore(lab: Lab, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    report = tmp_path / f"restore-{time.monotonic_ns()}.json"
    command = ["-m", "scripts.restore", "kafka-failover", "--stack", "prod", "--outputs", str(lab.prod.outputs_path)]
    proc = subprocess.run(
        [sys.executable, *command, "--json", str(report), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, json.loads(report.read_text())


def _collector_bootstrap(lab: Lab) -> str:
    status, body = http_get(f"{lab.prod.service.url}/actuator/prometheus")
    if status != 200:
        return ""
    info = [s for s in parse_prometheus(body.decode()) if s.name == "collector_kafka_info"]
    return dict(info[0].labels)["bootstrap"] if info else ""


@pytest.mark.usefixtures("fresh_collector")
def test_kafka_failover_moves_the_application_and_validate_follows_it(kafka: Lab, tmp_path: Path) -> None:
    """`restore kafka-failover --stack prod` with the collector's commits checkpointed on dr: dry run changes nothing;
    then the offsets move, the endpoints name dr's cluster, the pod is replaced and its collector consumes there;
    validate's probe goes to dr's cluster; a rerun changes nothing. The lab's objects re-applied switch it back."""
    settings = load_settings("prod", kafka.project_dir)
    group = settings.kafka.consumer_group
    code, _report, _checks = validate_prod(kafka, tmp_path)  # a consumed, committed event on prod's cluster
    assert code == 0
    deadline = time.monotonic() + 120
    while not any(
        tp.topic in settings.service.event_topics
        for tp in read_checkpoints(kafka.dr.kafka.bootstrap, cluster_alias(settings.region), group)
    ):
        assert time.monotonic() < deadline, "MirrorMaker 2 did not checkpoint the collector's commits in 120 s"
        time.sleep(1)
    before = kafka.prod.service.pod()
    assert before is not None and _collector_bootstrap(kafka)

    code, dry = _restore(kafka, tmp_path, "--dry-run")
    assert code == 0, dry
    assert {c["name"]: c for c in dry["checks"]}["application.endpoints"]["detail"].startswith("would set")
    assert kafka.prod.service.pod()["metadata"]["uid"] == before["metadata"]["uid"]  # type: ignore[index]

    try:
        code, moved = _restore(kafka, tmp_path)
        assert code == 0, moved
        names = [c["name"] for c in moved["checks"]]
        assert names.index("checkpoints") < names.index("application.endpoints") < names.index("application.rollout")
        assert moved["measured"]["application"]["restarted"]
        after = kafka.prod.service.pod()
        assert after is not None and after["metadata"]["uid"] != before["metadata"]["uid"]
        kafka.prod.service.wait()
        assert _collector_bootstrap(kafka) == moved["measured"]["application"]["after"]["KAFKA_BOOTSTRAP_SERVERS"]

        code, report, checks = validate_prod(kafka, tmp_path)
        assert code == 0, [c for c in report["checks"] if c["outcome"] != "pass"]
        assert report["measured"]["application_kafka"]["bootstrap"] == kafka.dr.kafka.gated_bootstrap
        assert kafka.dr.kafka.gated_bootstrap in checks["service.processing"]["detail"]

        code, again = _restore(kafka, tmp_path)
        assert code == 0 and not again["measured"]["application"]["restarted"], again
        assert kafka.prod.service.pod()["metadata"]["uid"] == after["metadata"]["uid"]  # type: ignore[index]
    finally:
        kafka.apply_workloads()  # the lab's endpoints and pod annotation again: the pod rolls back onto prod's cluster
        deadline = time.monotonic() + 120
        while _collector_bootstrap(kafka) in ("", moved_to(kafka)):
            assert time.monotonic() < deadline, "the stand-in did not return to prod's cluster"
            time.sleep(1)


def moved_to(lab: Lab) -> str:
    """dr's cluster as prod's pods reach it (what the switch writes)."""
    return lab.region("dr").kafka.pod_gated_bootstrap
