"""`scripts.restore pitr` on the lab: a self-managed restore from base backup + WAL archive lands exactly at T (the
batch committed after T is absent), the restored instance is a writable primary that archives nothing; RDS restore to
time creates the new instance in the emulator; times outside what can be restored are bad input (exit 2)."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg
import pytest

from drtopo.database.connect import connect, password
from drtopo.database.pitr.cutover import wait_archived
from drtopo.database.pitr.labels import find_base_backups
from drtopo.database.pitr.wal_names import archived_segments
from drtopo.outputs import StackOutputs
from lab.core import Lab
from scripts import restore
from tests.integration.backup_helpers import checks, insert_rows, rows_around_t, run_cli, stack_args

pytestmark = pytest.mark.lab


def test_self_managed_pitr_lands_exactly_at_t(
    lab: Lab, prod: StackOutputs, restored: list[Path], tmp_path: Path
) -> None:
    assert prod.self_managed is not None
    before, target = rows_around_t(prod, "pitr")  # pitr-b-* committed after T: not in the restored database
    archive = Path(prod.self_managed.archive_dir)
    histories = set(archive.glob("*.history"))
    code, report = run_cli(
        restore.main, ["pitr", "--time", target.isoformat(), *stack_args(lab)], tmp_path / "pitr.json"
    )
    assert report, "no report written"
    restored.append(Path(report["measured"]["data_dir"]))
    assert code == 0, report
    assert checks(report)["recovery stopped at T"]["ok"]
    with psycopg.connect(report["measured"]["conninfo"], password=password(prod), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()[0] == before + 300
        assert (
            conn.execute("SELECT count(*) FROM interface_exceptions WHERE transaction_id LIKE 'pitr-b-%'").fetchone()[0]
            == 0
        )
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        assert conn.execute("SHOW archive_mode").fetchone()[0] == "off"
        insert_rows(conn, "written-after-pitr-", 1)  # a writable primary
    # The restored instance's new timeline never reached the source's archive.
    assert set(archive.glob("*.history")) == histories


def test_a_time_past_the_end_of_the_archive_is_refused_before_anything_is_laid_out(
    lab: Lab, prod: StackOutputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert prod.self_managed is not None
    lab.prod.postgres.stop()  # a clean stop archives the last segment; nothing commits after T
    try:
        target = datetime.now(UTC)
        capsys.readouterr()
        code, report = run_cli(
            restore.main, ["pitr", "--time", target.isoformat(), *stack_args(lab)], tmp_path / "p.json"
        )
    finally:
        lab.prod.postgres.start()
    data_dir = Path(prod.self_managed.data_dir).parent / f"pitr-{target:%Y%m%dT%H%M%SZ}"
    assert code == 2 and report == {}
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--time {target.isoformat()} is outside the self-managed restorable window" in err
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (lambda now: "not-a-time", "is not an ISO 8601 time"),
        (lambda now: (now + timedelta(hours=1)).isoformat(), "is in the future"),
        (lambda now: now.replace(tzinfo=None).isoformat(), "has no zone"),
        (lambda now: (now - timedelta(days=400)).isoformat(), "outside the self-managed restorable window"),
    ],
    ids=["unparseable", "future", "no-zone", "too-old"],
)
def test_times_that_cannot_be_restored_are_bad_input(
    lab: Lab, prod: StackOutputs, when, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code, _ = run_cli(restore.main, ["pitr", "--time", when(datetime.now(UTC)), *stack_args(lab)], tmp_path / "p.json")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and err[-1].startswith("error: --time")


def test_rds_pitr_creates_a_new_instance_and_refuses_outside_the_window(
    lab: Lab, prod: StackOutputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rds = boto3.client("rds", region_name=prod.region)
    source = rds.describe_db_instances(DBInstanceIdentifier=prod.db_instance_id)["DBInstances"][0]
    created = source["InstanceCreateTime"]
    deadline = time.monotonic() + 10  # the emulator's clock is this machine's: a second, unless it runs ahead
    while datetime.now(UTC) <= created + timedelta(seconds=1):
        assert time.monotonic() < deadline, f"the instance's creation time {created} is still ahead of this clock"
        time.sleep(0.2)
    target = created + timedelta(seconds=1)
    name = f"{prod.db_instance_id}-pitr-test"
    args = ["pitr", "--rds", "--time", target.isoformat(), "--target-instance", name, *stack_args(lab)]
    code, report = run_cli(restore.main, args, tmp_path / "rds.json")
    try:
        assert code == 0, report
        new = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
        assert new["DBInstanceStatus"] == "available"
        tags = {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=new["DBInstanceArn"])["TagList"]}
        assert tags["drtopo:restored-from"] == prod.db_instance_id
        assert tags["drtopo:restore-time"] == target.astimezone(UTC).isoformat()
        assert report["measured"]["target_instance"] == name
    finally:
        rds.modify_db_instance(DBInstanceIdentifier=name, DeletionProtection=False, ApplyImmediately=True)
        rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)
    capsys.readouterr()
    too_old = (created - timedelta(minutes=5)).isoformat()
    code, _ = run_cli(restore.main, ["pitr", "--rds", "--time", too_old, *stack_args(lab)], tmp_path / "rds.json")
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"outside instance {prod.db_instance_id}'s restorable window" in err
    assert created.astimezone(UTC).isoformat(timespec="seconds") in err


def test_window_names_the_base_backup_for_t_and_ends_at_the_archive_when_the_source_is_down(
    lab: Lab, prod: StackOutputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert prod.self_managed is not None
    code, report = run_cli(restore.main, ["pitr", "--window", *stack_args(lab)], tmp_path / "w.json")
    assert code == 0, report
    assert report["measured"]["latest_basis"].startswith("now: the source is a primary")
    assert [b["path"] for b in report["measured"]["base_backups"]] == [prod.self_managed.base_backup_dir]
    target = datetime.now(UTC)
    args = ["pitr", "--window", "--time", target.isoformat(), *stack_args(lab)]
    code, report = run_cli(restore.main, args, tmp_path / "w.json")
    assert code == 0 and report["measured"]["base_backup"] == prod.self_managed.base_backup_dir
    with connect(prod) as conn:
        before_commit = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        insert_rows(conn, f"window-{time.time_ns()}-", 5)
    lab.prod.postgres.stop()  # a clean stop archives the last segment; nothing commits after this
    try:
        code, report = run_cli(restore.main, ["pitr", "--window", *stack_args(lab)], tmp_path / "w.json")
        assert code == 0, report
        latest = datetime.fromisoformat(report["measured"]["latest"])
        assert "newest commit in the WAL archive" in report["measured"]["latest_basis"]
        assert before_commit <= latest <= datetime.now(UTC)
        capsys.readouterr()
        after = (latest + timedelta(milliseconds=1)).isoformat()
        code, _ = run_cli(restore.main, ["pitr", "--time", after, *stack_args(lab)], tmp_path / "w.json")
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2
        assert "outside the self-managed restorable window" in err
        assert latest.isoformat(timespec="seconds") in err  # the window ends at the newest archived commit
    finally:
        lab.prod.postgres.start()


def test_a_gap_in_the_archived_wal_chain_fails_the_window_check(lab: Lab, prod: StackOutputs, tmp_path: Path) -> None:
    assert prod.self_managed is not None
    with connect(prod) as conn:
        for batch in range(3):  # three more segments in the archive after the base backup
            insert_rows(conn, f"chain-{batch}-{time.time_ns()}-", 50)
            conn.execute("SELECT pg_switch_wal()")
        wait_archived(conn)
    code, report = run_cli(restore.main, ["pitr", "--window", *stack_args(lab)], tmp_path / "w.json")
    assert code == 0 and checks(report)["WAL chain"]["ok"], report
    archive = Path(prod.self_managed.archive_dir)
    segments = archived_segments(archive)
    start = next(b for b in find_base_backups(Path(prod.self_managed.base_backup_dir), archive)).start_wal
    middle = next(name for name in segments if name > start and name != segments[-1])
    moved = tmp_path / middle
    shutil.move(archive / middle, moved)
    try:
        code, report = run_cli(restore.main, ["pitr", "--window", *stack_args(lab)], tmp_path / "w.json")
        assert code == 1
        assert checks(report)["WAL chain"]["detail"].startswith(f"1 segments missing in the archive, first {middle}")
        assert report["measured"]["wal_gaps"] == [middle]
    finally:
        shutil.move(moved, archive / middle)
