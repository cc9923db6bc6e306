"""`scripts.restore dump` on the lab: restores into an empty database and checks counts, refuses a non-empty target
without --clean, refuses a corrupt dump before touching the target; `kafka-topics` creates what a cluster lacks,
with the configured partitions and retention, and only that; `consumer-offsets` moves the group on the backup cluster
to the offsets MirrorMaker 2's checkpoints translate, and refuses while the group is active there."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, ConfigResource
from psycopg import sql

from drtopo.database.connect import connect, password
from drtopo.database.pg_tools import table_counts
from drtopo.kafka.admin import committed_offsets
from drtopo.kafka.topics import clusters
from drtopo.outputs import StackOutputs, load_outputs
from drtopo.settings import load_settings
from lab import kafka, process
from lab.core import Lab
from scripts import backup, restore
from tests.integration.backup_helpers import checks, insert_rows, run_cli, stack_args
from tests.integration.switchover_support import collectors_paused, consume_and_wait_for_checkpoints

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module", autouse=True)
def baseline(lab: Lab) -> None:
    """Earlier modules (promote, failback) may leave dr promoted: start from prod primary, dr standby."""
    lab.restore_baseline()


@pytest.fixture(scope="module")
def dump_key(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> str:
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    with connect(outputs) as conn:
        insert_rows(conn, f"rs-{uuid.uuid4()}-", 50)
    code, report = run_cli(backup.main, ["run", *stack_args(lab)], tmp_path_factory.mktemp("dump") / "run.json")
    assert code == 0, report
    return report["measured"]["keys"][0]


@pytest.fixture
def target(lab: Lab) -> Iterator[tuple[str, StackOutputs]]:
    """A new, empty database on the prod server, dropped afterwards: (DSN without password, outputs)."""
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    name = f"restore_target_{uuid.uuid4().hex[:8]}"
    with connect(outputs, dbname="postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield psycopg.conninfo.make_conninfo(lab.prod.postgres.conninfo(), dbname=name), outputs
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _counts(dsn: str, outputs: StackOutputs) -> dict[str, int]:
    with psycopg.connect(dsn, password=password(outputs)) as conn:
        return table_counts(conn)


def test_restore_into_an_empty_database_matches_the_dump(
    lab: Lab, dump_key: str, target: tuple[str, StackOutputs], tmp_path: Path
) -> None:
    dsn, outputs = target
    code, report = run_cli(restore.main, ["dump", dump_key, "--target", dsn, *stack_args(lab)], tmp_path / "r.json")
    assert code == 0, report
    s3 = boto3.client("s3", region_name=outputs.region)
    manifest = json.loads(s3.get_object(Bucket=outputs.dump_bucket, Key=f"{dump_key}.manifest.json")["Body"].read())
    counts = _counts(dsn, outputs)
    assert checks(report)["rows public.interface_exceptions"]["value"] == counts["public.interface_exceptions"]
    assert manifest["row_counts"]["public.interface_exceptions"] == counts["public.interface_exceptions"]


def test_non_empty_target_is_refused_without_clean(
    lab: Lab, dump_key: str, target: tuple[str, StackOutputs], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, outputs = target
    args = ["dump", dump_key, "--target", dsn, *stack_args(lab)]
    assert run_cli(restore.main, args, tmp_path / "r.json")[0] == 0
    with psycopg.connect(dsn, password=password(outputs), autocommit=True) as conn:
        insert_rows(conn, "added-after-restore-", 5)
    before = _counts(dsn, outputs)
    capsys.readouterr()
    assert run_cli(restore.main, args, tmp_path / "r.json")[0] == 3
    err = capsys.readouterr().err
    assert "refused: target" in err and "is not empty" in err and "--clean" in err
    assert _counts(dsn, outputs) == before
    code, report = run_cli(restore.main, [*args, "--clean"], tmp_path / "r.json")
    assert code == 0, report
    assert _counts(dsn, outputs)["public.interface_exceptions"] == before["public.interface_exceptions"] - 5


def test_a_corrupt_dump_is_refused_before_the_target_is_touched(
    lab: Lab, dump_key: str, target: tuple[str, StackOutputs], tmp_path: Path
) -> None:
    dsn, outputs = target
    s3 = boto3.client("s3", region_name=outputs.region)
    obj = s3.get_object(Bucket=outputs.dump_bucket, Key=dump_key)
    body = bytearray(obj["Body"].read())
    body[len(body) // 2] ^= 0xFF
    key = f"damaged/{uuid.uuid4()}.dump"
    s3.put_object(Bucket=outputs.dump_bucket, Key=key, Body=bytes(body), Metadata=obj["Metadata"])
    code, report = run_cli(restore.main, ["dump", key, "--target", dsn, *stack_args(lab)], tmp_path / "r.json")
    assert code == 1
    assert checks(report)["sha256"]["ok"] is False
    assert _counts(dsn, outputs) == {}


@pytest.fixture
def restore_takes_reads(lab: Lab) -> Iterator[int]:
    """An archive restore in the emulator finishes after 4 more reads of the object (its default makes the restored
    copy readable at once): the restore is seen under way before it is done."""
    reads = 4
    body = {"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": reads}}
    _moto_api(lab, "set-transition", body)
    yield reads
    _moto_api(lab, "unset-transition", {"model_name": "s3::keyrestore"})


def _moto_api(lab: Lab, verb: str, body: dict) -> None:
    request = urllib.request.Request(
        f"{lab.aws_endpoint}/moto-api/state-manager/{verb}", json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


@pytest.mark.usefixtures("restore_takes_reads")
@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_an_archived_monthly_dump_is_restored_from_its_storage_class(
    lab: Lab,
    target: tuple[str, StackOutputs],
    storage_class: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn, outputs = target
    code, made = run_cli(backup.main, ["run", "--date", "2026-12-01", *stack_args(lab)], tmp_path / "run.json")
    assert code == 0, made
    key = next(k for k in made["measured"]["keys"] if k.startswith("monthly/"))
    s3 = boto3.client("s3", region_name=outputs.region)
    # What the monthly tier's lifecycle transition does to the dump (the emulator stores lifecycle rules, never
    # applies them); the manifest beside it is under 128 KB and stays where it is, as S3's default rule keeps it.
    s3.copy_object(
        Bucket=outputs.dump_bucket,
        Key=key,
        CopySource={"Bucket": outputs.dump_bucket, "Key": key},
        StorageClass=storage_class,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=outputs.kms_key_arn,
    )
    with pytest.raises(s3.exceptions.InvalidObjectState):
        s3.get_object(Bucket=outputs.dump_bucket, Key=key)

    code, listing = run_cli(backup.main, ["list", *stack_args(lab)], tmp_path / "list.json")
    (entry,) = [i for i in listing["measured"]["backups"]["monthly"] if i["key"] == key]
    assert (entry["storage_class"], entry["readable_now"], entry["state"]) == (storage_class, False, "archived")

    args = ["dump", key, "--target", dsn, "--poll-seconds", "0.5", *stack_args(lab)]
    code, plan = run_cli(restore.main, [*args, "--dry-run"], tmp_path / "plan.json")
    assert code == 0 and f"request a Standard restore from {storage_class}" in checks(plan)["plan"]["detail"]
    assert s3.head_object(Bucket=outputs.dump_bucket, Key=key).get("Restore") is None, "a dry run asks for nothing"
    if storage_class == "DEEP_ARCHIVE":
        capsys.readouterr()
        code, _ = run_cli(restore.main, [*args, "--tier", "Expedited"], tmp_path / "r.json")
        assert code == 2
        assert "--tier Expedited is not offered for DEEP_ARCHIVE" in capsys.readouterr().err

    capsys.readouterr()
    code, report = run_cli(restore.main, args, tmp_path / "r.json")
    assert code == 0, report
    found = checks(report)
    assert "restore requested (Standard, copy kept 2 days)" in found["restore request"]["detail"]
    assert found["restored copy readable"]["ok"] and found["sha256"]["ok"]
    progress = [line for line in capsys.readouterr().err.splitlines() if f"{key}: restoring after" in line]
    assert progress, "progress is printed while the restore is under way"
    assert "typically" in progress[0] and "waiting up to" in progress[0]
    assert report["measured"]["retrieval_seconds"] >= 0.5 * len(progress)
    assert report["measured"]["storage_class"] == storage_class
    manifest = json.loads(s3.get_object(Bucket=outputs.dump_bucket, Key=f"{key}.manifest.json")["Body"].read())
    counts = _counts(dsn, outputs)
    assert counts == manifest["row_counts"] and found["rows public.interface_exceptions"]["ok"]

    code, listing = run_cli(backup.main, ["list", *stack_args(lab)], tmp_path / "list.json")
    (entry,) = [i for i in listing["measured"]["backups"]["monthly"] if i["key"] == key]
    assert entry["readable_now"] is True and entry["state"].startswith("restored until")
    s3.delete_object(Bucket=outputs.dump_bucket, Key=key)  # later tests count monthly dumps


@pytest.mark.parametrize(
    ("target_dsn", "code"),
    [("host=127.0.0.1 port=notaport =broken", 2), ("host=127.0.0.1 port=1 dbname=x connect_timeout=1", 3)],
    ids=["unparseable", "unreachable"],
)
def test_bad_or_unreachable_target(
    lab: Lab, dump_key: str, target_dsn: str, code: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["dump", dump_key, "--target", target_dsn, *stack_args(lab)]
    assert run_cli(restore.main, args, tmp_path / "r.json")[0] == code
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def empty_kafka(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A private, empty single-broker cluster as prod's own ("source") cluster, so topics can be deleted freely;
    the peer ("backup") address points at a closed port. Yields (outputs file, bootstrap)."""
    root = tmp_path_factory.mktemp("kafka-restore")
    try:
        cluster = kafka.start_cluster(root, "restore-topics")
        data = json.loads(lab.prod.outputs_path.read_text())
        data.update(kafkaBootstrap=cluster.bootstrap, peerKafkaBootstrap=f"127.0.0.1:{process.free_port()}")
        path = root / "prod.json"
        path.write_text(json.dumps(data))
        yield path, cluster.bootstrap
    finally:
        kafka.stop_cluster(root, "restore-topics")


def _topics(bootstrap: str) -> dict[str, tuple[int, str]]:
    """name -> (partitions, retention.ms) of the service's topics on the cluster."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    names = [n for n in metadata if not n.startswith("__")]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources, request_timeout=10).items()}
    return {n: (len(metadata[n].partitions), configs[n]["retention.ms"].value) for n in names}


def test_kafka_topics_are_recreated_idempotently(lab: Lab, empty_kafka: tuple[Path, str], tmp_path: Path) -> None:
    outputs_file, bootstrap = empty_kafka
    args = ["kafka-topics", "--cluster", "source", "--stack", "prod", "--outputs", str(outputs_file)]
    configured = {t.name: t for t in load_settings("prod", lab.project_dir).kafka.topics}
    code, report = run_cli(restore.main, args, tmp_path / "k.json")
    assert code == 0, report
    assert sorted(report["measured"]["created"]) == sorted(configured) and report["measured"]["existed"] == []
    assert _topics(bootstrap) == {n: (t.partitions, str(t.retention_ms)) for n, t in configured.items()}
    code, report = run_cli(restore.main, args, tmp_path / "k.json")
    assert code == 0 and report["measured"]["created"] == []
    assert sorted(report["measured"]["existed"]) == sorted(configured)
    lost = next(iter(configured))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([lost], request_timeout=10)[lost].result()
    deadline = time.monotonic() + 20
    # Names only: a topic being deleted can still be listed while describing its config already fails.
    while lost in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{lost} still listed 20 s after its deletion"
        time.sleep(0.2)
    code, report = run_cli(restore.main, args, tmp_path / "k.json")
    assert code == 0 and report["measured"]["created"] == [lost]


def test_kafka_topics_on_an_unreachable_cluster_is_refused(
    empty_kafka: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs_file, _ = empty_kafka
    args = ["kafka-topics", "--cluster", "backup", "--stack", "prod", "--outputs", str(outputs_file)]
    capsys.readouterr()
    assert run_cli(restore.main, args, tmp_path / "k.json")[0] == 3
    assert "target not ready" in capsys.readouterr().err


def test_consumer_offsets_move_the_group_to_the_checkpointed_offsets(lab: Lab, tmp_path: Path) -> None:
    servers = lab.status()["servers"]
    assert all(servers.get(f"kafka-{s}", {}).get("running") for s in ("prod", "dr")), "the lab's Kafka is not running"
    settings = load_settings("dr", lab.project_dir)
    group, topic = settings.kafka.consumer_group, settings.kafka.mirrored_topics[0]
    backup = lab.dr.kafka.bootstrap
    source_alias = clusters(settings, load_outputs(lab.dr.outputs_path, "dr"))["source"].alias
    with collectors_paused(lab):
        expected = consume_and_wait_for_checkpoints(lab, topic, group, source_alias)
        code, report = run_cli(restore.main, ["consumer-offsets", *stack_args(lab, "dr")], tmp_path / "o.json")
        assert code == 0, report
        applied = committed_offsets(backup, group)
        assert {tp: applied[tp] for tp in expected} == expected

        member = Consumer({"bootstrap.servers": backup, "group.id": group, "enable.auto.commit": False})
        try:
            member.subscribe([topic])
            deadline = time.monotonic() + 20
            while not member.assignment():
                assert time.monotonic() < deadline, "the group member got no assignment within 20 s"
                member.poll(0.5)
            code, _ = run_cli(restore.main, ["consumer-offsets", *stack_args(lab, "dr")], tmp_path / "o.json")
            assert code == 3  # an active group's own commits would race ours
        finally:
            member.close()
