"""`python -m scripts.status --stack dr` on the lab: every item passes (or skips with its reason) on a healthy pair,
and each fault fails its item by name: a dump older than its tier allows (a real dump of prod dated three days ago,
taken before any fresh one), MirrorMaker stopped while records are produced, and replica lag past the RPO (replay
paused on dr, in a project copy whose region-failure RPO is tiny). The healthy run's page opens in headless
Chromium with a row per item, and its published JSON and metrics are in the emulator. Every fault is undone by its
case. The program's scheduled readiness check (the standby's CronJob) runs on the lab's Kubernetes, and its run lands
in the configuration bucket, its metrics beside the alarm the lab seeds.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest
from confluent_kafka import Producer

from drtopo.aws import stack_client
from drtopo.backup.store import s3_client
from drtopo.context import Context
from drtopo.kafka.admin import Partition, committed_offsets, watermarks
from drtopo.kafka.lag import mirrormaker_lag
from drtopo.kafka.offsets import CheckpointError, read_checkpoints
from drtopo.mm2_properties import cluster_alias
from drtopo.outputs import load_outputs
from drtopo.readiness import publish, rules, schedule
from drtopo.settings import load_settings
from lab import kube_workloads
from lab.core import Lab
from scripts import backup, status
from tests.integration.backup_helpers import checks, run_cli, stack_args
from tests.unit.test_readiness_page import Dom, chromium

pytestmark = pytest.mark.lab

TIMEOUT = 90


def checkpoints_behind(lab: Lab) -> list[Partition]:
    """The service group's partitions committed on prod that MirrorMaker has not checkpointed on dr at that offset."""
    settings = load_settings("dr", lab.project_dir)
    group = settings.kafka.consumer_group
    committed = committed_offsets(lab.prod.kafka.bootstrap, group, settings.kafka.mirrored_topics)
    if not committed:
        return []
    source = cluster_alias(load_settings("prod", lab.project_dir).region)
    try:
        checkpoints = read_checkpoints(lab.dr.kafka.bootstrap, source, group)
    except CheckpointError:
        return sorted(committed)
    return sorted(p for p, at in committed.items() if p not in checkpoints or checkpoints[p].upstream_offset < at)


def wait_consumed(lab: Lab, topic: str) -> None:
    """prod's collector has committed the end of every partition of `topic` (bounded)."""
    group = load_settings("prod", lab.project_dir).kafka.consumer_group
    deadline = time.monotonic() + TIMEOUT
    while True:
        ends = {p: high for p, (_low, high) in watermarks(lab.prod.kafka.bootstrap, [topic]).items() if high}
        committed = committed_offsets(lab.prod.kafka.bootstrap, group, [topic])
        if all(committed.get(p, -1) >= high for p, high in ends.items()):
            return
        assert time.monotonic() < deadline, f"prod's collector did not consume {topic}: {committed} of {ends}"
        time.sleep(0.5)


def wait_healthy(lab: Lab) -> None:
    """dr has replayed prod's WAL, MirrorMaker has copied every mirrored topic and checkpointed the service group's
    commits (what status's mirror items ask)."""
    with psycopg.connect(lab.prod.postgres.conninfo(), autocommit=True) as prod:
        (lsn,) = prod.execute("SELECT pg_current_wal_lsn()").fetchone()
    kafka = load_settings("dr", lab.project_dir).kafka
    # Measured as status measures it (the mirror's own offset.lag.max, the lab's 10): with the product default (100)
    # records copied past MirrorMaker's newest offset sync counted as copied here and as behind in status.
    topics, cap = kafka.mirrored_topics, kafka.mirror.offset_lag_max
    deadline = time.monotonic() + TIMEOUT
    with psycopg.connect(lab.dr.postgres.conninfo(), autocommit=True) as dr:
        while not dr.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            assert time.monotonic() < deadline, f"dr did not replay up to {lsn}"
            time.sleep(0.1)
    while any(mirrormaker_lag(lab.prod.kafka.bootstrap, lab.dr.kafka.bootstrap, topics, offset_lag_max=cap).values()):
        assert time.monotonic() < deadline, "MirrorMaker 2 did not catch up"
        time.sleep(1)
    while behind := checkpoints_behind(lab):
        assert time.monotonic() < deadline, f"MirrorMaker 2 did not checkpoint the group's commits on {behind}"
        time.sleep(1)


def insert(lab: Lab, transaction: str) -> None:
    with psycopg.connect(lab.prod.postgres.conninfo(), autocommit=True) as prod:
        prod.execute(
            "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation, status)"
            " VALUES (%s, 'ORDER', 'rejected', 'CREATE_ORDER', 'NEW')",
            (transaction,),
        )


class Pair(NamedTuple):
    """What `status` runs with: the project folder (stack files) and the folder of the pair's outputs files."""

    project: Path
    outputs: Path


@contextmanager
def old_dump(lab: Lab, tmp: Path) -> Iterator[Pair]:
    """The pair's outputs copied with prod's dump bucket a fresh one in the emulator, whose only dump is a real dump
    of prod dated three days ago (whatever dumps other tests of the session left in the lab's own bucket)."""
    outputs = tmp / "outputs"
    outputs.mkdir()
    for stack in ("prod", "dr"):
        shutil.copy(lab.region(stack).outputs_path, outputs / f"{stack}.json")
    document = json.loads((outputs / "prod.json").read_text())
    bucket = f"status-old-dump-{time.monotonic_ns()}"
    s3_client(load_outputs(outputs / "prod.json", "prod")).create_bucket(Bucket=bucket)
    document["dumpBucket"] = bucket
    (outputs / "prod.json").write_text(json.dumps(document))
    day = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    args = ["run", "--stack", "prod", "--outputs", str(outputs / "prod.json"), "--date", day]
    assert run_cli(backup.main, args, tmp / "old.json")[0] == 0
    wait_healthy(lab)
    yield Pair(lab.project_dir, outputs)


@contextmanager
def healthy(lab: Lab, tmp: Path) -> Iterator[Pair]:
    """A dump taken now; dr replayed and the mirror caught up."""
    assert run_cli(backup.main, ["run", *stack_args(lab)], tmp / "dump.json")[0] == 0
    wait_healthy(lab)
    yield Pair(lab.project_dir, lab.dr.outputs_path.parent)


@contextmanager
def mirrormaker_stopped(lab: Lab, tmp: Path) -> Iterator[Pair]:
    """MirrorMaker stopped, from a healthy pair, while 150 records (beyond the mirror's offset lag bound) reach prod's
    cluster. Healthy includes checkpoints of the service group's commits on the topic (on a fresh lab it has none
    yet: records are consumed and checkpointed first), so only the lag fails, not the checkpoints' age."""
    producer = Producer({"bootstrap.servers": lab.prod.kafka.bootstrap})
    for i in range(30):
        producer.produce("OrderRejected", key=f"status-before-{i}", value=b"{}")
    assert producer.flush(30) == 0
    wait_consumed(lab, "OrderRejected")
    wait_healthy(lab)
    lab.stop_mirrormaker()
    try:
        producer = Producer({"bootstrap.servers": lab.prod.kafka.bootstrap})
        for i in range(150):
            producer.produce("OrderRejected", key=f"status-{i}", value=b"{}")
        assert producer.flush(30) == 0
        yield Pair(lab.project_dir, lab.dr.outputs_path.parent)
    finally:
        lab.start_mirrormaker()
        wait_healthy(lab)


@contextmanager
def replica_behind(lab: Lab, tmp: Path) -> Iterator[Pair]:
    """dr's replay paused while prod commits a row, in a project copy whose region-failure RPO is 0.06 ms."""
    project = tmp / "project"
    shutil.copytree(lab.project_dir, project, ignore=shutil.ignore_patterns(".lab", ".venv", ".cache", ".git"))
    with (project / "Pulumi.dr.yaml").open("a") as f:
        f.write("  drtopo:objectives:\n    regionFailure:\n      rtoMinutes: 240\n      rpoMinutes: 0.000001\n")
    insert(lab, "status-replayed")
    wait_healthy(lab)  # dr has replayed a commit: its lag has a time to count from
    with psycopg.connect(lab.dr.postgres.conninfo(), autocommit=True) as dr:
        dr.execute("SELECT pg_wal_replay_pause()")
    try:
        insert(lab, "status-behind")
        time.sleep(0.5)
        yield Pair(project, lab.dr.outputs_path.parent)
    finally:
        with psycopg.connect(lab.dr.postgres.conninfo(), autocommit=True) as dr:
            dr.execute("SELECT pg_wal_replay_resume()")
        wait_healthy(lab)


Fault = Callable[[Lab, Path], AbstractContextManager[Pair]]

# (case, fault, the items that must fail: none for a healthy pair). Order matters: the old dump is the newest only
# before the healthy case takes a fresh one. With the tiny RPO the WAL archive's age fails too: its limit is that RPO.
CASES: list[tuple[str, Fault, tuple[str, ...]]] = [
    ("dump-older-than-its-tier", old_dump, (rules.DUMP_AGE,)),
    ("healthy", healthy, ()),
    ("mirrormaker-stopped", mirrormaker_stopped, (rules.MIRROR_LAG,)),
    ("replica-lag-past-the-rpo", replica_behind, (rules.REPLICA_LAG, rules.WAL_AGE)),
]


def published(lab: Lab, report: dict[str, Any]) -> None:
    """The run's JSON is the stack's latest in its configuration bucket, and its metrics are in CloudWatch."""
    dr = load_outputs(lab.dr.outputs_path, "dr")
    body = s3_client(dr).get_object(Bucket=dr.config_bucket, Key=publish.readiness_key("dr"))["Body"].read()
    assert json.loads(body)["checks"] == report["checks"]
    metrics = stack_client("cloudwatch", dr).list_metrics(Namespace=publish.NAMESPACE)["Metrics"]
    items = {d["Value"] for m in metrics if m["MetricName"] == publish.ITEM_METRIC for d in m["Dimensions"]}
    assert set(rules.ITEMS) <= items
    assert any(m["MetricName"] == publish.FAILING_METRIC for m in metrics)


def status_of(pair: Pair, tmp: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    def main(argv: list[str]) -> int:
        return status.main(argv, Context(project_dir=pair.project, state_dir=tmp / "state"))

    args = ["--stack", "dr", "--outputs", str(pair.outputs / "dr.json"), *extra]
    return run_cli(main, args, tmp / "status.json")


@pytest.mark.parametrize(("case", "fault", "failing"), CASES, ids=[c[0] for c in CASES])
def test_status_names_the_item_at_risk(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, fault: Fault, failing: tuple[str, ...]
) -> None:
    page = tmp_path / "status.html"
    with fault(lab, tmp_path) as pair:
        capsys.readouterr()
        code, report = status_of(pair, tmp_path, "--html", str(page), "--publish")
        out = capsys.readouterr().out
    items = checks(report)
    assert set(items) == set(rules.ITEMS), sorted(items)
    assert all(c["detail"] for c in items.values()), "an item without its reason"
    if not failing:
        assert code == 0, [c for c in report["checks"] if c["outcome"] == "fail"]
        assert items[rules.REPLICA_LAG]["outcome"] == "pass"
        assert items[rules.DUMP_AGE]["outcome"] == "pass" and items[rules.DUMP_AGE]["value"] < 3600
        assert items[rules.WAL_CHAIN]["outcome"] == "pass"
        assert items[rules.MIRROR_LAG]["outcome"] == "pass"
        assert items[rules.ROLES]["outcome"] == "pass"
        assert report["estimate"]["rpo"]["seconds"] is not None
        assert report["estimate"]["rpo"]["within"] is True
        dom = Dom()
        dom.feed(chromium("--dump-dom", page.as_uri()).stdout)
        rows = [a["data-item"] for t, a in dom.elements if t == "tr" and "data-item" in a]
        assert rows == [c["name"] for c in report["checks"]]
        published(lab, report)
        return
    assert code == 1
    failed = sorted(n for n, c in items.items() if c["outcome"] == "fail")
    assert failed == sorted(failing), [items[n] for n in failed]
    for name in failing:
        assert f"FAIL  {name}" in out
    item = items[failing[0]]
    if item["name"] == rules.DUMP_AGE:
        assert item["value"] > item["limit"] == rules.dump_age_limit("daily")
    if item["name"] == rules.REPLICA_LAG:
        assert item["limit"] == pytest.approx(0.00006) and item["value"] > item["limit"]
    if item["name"] == rules.MIRROR_LAG:
        assert item["value"] >= 150


def test_the_scheduled_readiness_check_runs_on_the_standbys_kubernetes_and_publishes_to_its_metric_and_alarm(
    lab: Lab, tmp_path: Path
) -> None:
    """The program's readiness CronJob of dr (the standby) run now on the lab's Kubernetes, on a healthy pair: the
    Job completes (every item passed), its run is dr's latest in the configuration bucket, the metrics it put are
    the ones the seeded alarm watches, and that alarm routes to a topic that exists."""
    namespace = lab.dr.namespace
    assert lab.dr.settings.role.value == "standby"
    # The metric window starts at a whole second: the emulator drops the start's fraction (moto's
    # get_metric_statistics), so the previous case's publish (2 failing) within the same second would count.
    started = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(max(0.0, (started - datetime.now(UTC)).total_seconds()))
    with healthy(lab, tmp_path):
        job = kube_workloads.run_cronjob(lab.root, namespace, schedule.JOB, f"{schedule.JOB}-now", timeout=300)
    assert job["status"]["succeeded"] == 1
    template = job["spec"]["template"]["spec"]
    (container,) = template["containers"]
    assert container["image"] == lab.image("backup") and container["command"] == schedule.command("dr")
    assert template["serviceAccountName"] == schedule.JOB and template["securityContext"]["runAsUser"] == 10001
    logs = kube_workloads.job_logs(lab.root, namespace, f"{schedule.JOB}-now")
    assert "published: s3://" in logs, logs
    dr = load_outputs(lab.dr.outputs_path, "dr")
    body = s3_client(dr).get_object(Bucket=dr.config_bucket, Key=publish.readiness_key("dr"))["Body"].read()
    run = json.loads(body)
    assert datetime.fromisoformat(run["measured"]["at"]) >= started
    assert sorted(c["name"] for c in run["checks"]) == sorted(rules.ITEMS)
    assert not [c for c in run["checks"] if c["outcome"] == "fail"]
    cloudwatch = stack_client("cloudwatch", dr)
    alarm = cloudwatch.describe_alarms(AlarmNames=[schedule.alarm_name("dr")])["MetricAlarms"]
    assert len(alarm) == 1, "the lab seeds the standby's readiness alarm"
    (alarm,) = alarm
    assert alarm["TreatMissingData"] == "breaching"
    points = cloudwatch.get_metric_statistics(
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Dimensions=alarm["Dimensions"],
        StartTime=started,
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert points and max(p["Maximum"] for p in points) == 0  # the job's run: nothing failing
    items = cloudwatch.list_metrics(Namespace=publish.NAMESPACE, MetricName=publish.ITEM_METRIC)["Metrics"]
    assert set(rules.ITEMS) <= {d["Value"] for m in items for d in m["Dimensions"] if d["Name"] == "Item"}
    topics = {t["TopicArn"] for t in stack_client("sns", dr).list_topics()["Topics"]}
    assert alarm["AlarmActions"] and set(alarm["AlarmActions"]) <= topics
