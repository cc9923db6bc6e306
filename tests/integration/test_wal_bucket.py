"""The WAL bucket on the lab: the primary's archive command ships every WAL file into its stack's bucket (in the
emulator), the base backup is there too, the chain check sees a gap, and a point-in-time restore from the bucket
alone lands exactly at T."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import psycopg
import pytest

from drtopo.backup import store, wal
from drtopo.database.connect import connect, password
from drtopo.database.pitr.cutover import wait_archived
from drtopo.database.pitr.wal_names import archived_segments
from drtopo.outputs import StackOutputs
from lab.core import Lab
from scripts import restore
from scripts import wal as wal_cli
from tests.integration.backup_helpers import checks, insert_rows, rows_around_t, run_cli, stack_args

pytestmark = pytest.mark.lab


def test_every_archived_file_reaches_the_bucket_with_its_checksum(lab: Lab, prod: StackOutputs) -> None:
    assert prod.self_managed is not None
    with connect(prod) as conn:
        segment = wait_archived(conn)
    s3 = store.s3_client(prod)
    in_bucket = wal.listing(s3, prod.wal_bucket)
    local = archived_segments(Path(prod.self_managed.archive_dir))
    assert segment in in_bucket
    assert set(local) <= set(in_bucket), sorted(set(local) - set(in_bucket))
    head = s3.head_object(Bucket=prod.wal_bucket, Key=wal.wal_key(segment))
    assert head["Metadata"]["sha256"] == store.sha256_file(Path(prod.self_managed.archive_dir) / segment)
    assert head["ServerSideEncryption"] == "aws:kms"
    # Pushed again (PostgreSQL re-archives after a crash): success, nothing rewritten.
    source = Path(prod.self_managed.archive_dir) / segment
    assert wal_cli.main(["push", str(source), segment, *stack_args(lab)]) == 0
    # Other bytes under an archived name: refused, the archived file kept.
    other = lab.root / "not-that-segment"
    other.write_bytes(b"\0" * 16)
    assert wal_cli.main(["push", str(other), segment, *stack_args(lab)]) == 1
    again = s3.head_object(Bucket=prod.wal_bucket, Key=wal.wal_key(segment))
    assert again["ETag"] == head["ETag"]
    assert wal.read_archive(s3, prod.wal_bucket).base_backups, "the lab's base backup is not in the WAL bucket"


def test_a_burst_of_segments_is_archived_ahead_and_every_acknowledgement_taken(lab: Lab, prod: StackOutputs) -> None:
    """Eight segments finished at once: the archive command asked for the first uploads the next ones beside it (the
    lab's agent runs `wal_ahead` with 4), each lands in the bucket with its checksum, and once PostgreSQL has asked for
    them all no acknowledgement is left waiting in the spool."""
    assert prod.self_managed is not None
    spool = lab.root / "wal-spool" / Path(prod.self_managed.data_dir).name
    with connect(prod) as conn:
        for i in range(8):
            insert_rows(conn, f"walb-burst-{i}-{time.time_ns()}-", 10)
            conn.execute("SELECT pg_switch_wal()")
        wait_archived(conn)
    assert spool.is_dir(), f"no file was uploaded ahead ({spool} was never written)"
    assert not list(spool.glob("*.ok")), "acknowledgements left that PostgreSQL never asked for"
    s3 = store.s3_client(prod)
    in_bucket = wal.listing(s3, prod.wal_bucket)
    local = archived_segments(Path(prod.self_managed.archive_dir))
    assert set(local) <= set(in_bucket), sorted(set(local) - set(in_bucket))
    for segment in local[-8:]:
        head = s3.head_object(Bucket=prod.wal_bucket, Key=wal.wal_key(segment))
        assert head["Metadata"]["sha256"] == store.sha256_file(Path(prod.self_managed.archive_dir) / segment)


def test_fetch_brings_a_file_back_and_says_when_there_is_none(lab: Lab, prod: StackOutputs, tmp_path: Path) -> None:
    with connect(prod) as conn:
        segment = wait_archived(conn)
    dest = tmp_path / "RECOVERYXLOG"
    assert wal_cli.main(["fetch", segment, str(dest), *stack_args(lab)]) == 0
    assert prod.self_managed is not None
    assert dest.read_bytes() == (Path(prod.self_managed.archive_dir) / segment).read_bytes()
    assert wal_cli.main(["fetch", "0000000900000000000000AA", str(tmp_path / "none"), *stack_args(lab)]) == 1
    assert not (tmp_path / "none").exists()
    assert wal_cli.main(["fetch", "../etc/passwd", str(tmp_path / "x"), *stack_args(lab)]) == 2


def test_pitr_from_the_wal_bucket_alone_lands_exactly_at_t(
    lab: Lab, prod: StackOutputs, restored: list[Path], tmp_path: Path
) -> None:
    before, target = rows_around_t(prod, "walb")
    args = ["pitr", "--time", target.isoformat(), "--wal-source", "bucket", *stack_args(lab)]
    code, report = run_cli(restore.main, args, tmp_path / "pitr.json")
    assert report, "no report written"
    if "data_dir" in report["measured"]:
        restored.append(Path(report["measured"]["data_dir"]))
    assert code == 0, report
    assert checks(report)["WAL bucket"]["ok"] and checks(report)["WAL chain"]["ok"]
    assert checks(report)["recovery stopped at T"]["ok"]
    data_dir = Path(report["measured"]["data_dir"])
    conf = (data_dir / "postgresql.auto.conf").read_text()
    assert prod.self_managed is not None
    # Replayed from the copy of the bucket, never from the server's own archive folder.
    assert f"restore_command = 'cp \"{prod.self_managed.archive_dir}/" not in conf.split("drtopo point-in-time")[-1]
    assert "wal-bucket-" in conf.split("drtopo point-in-time")[-1]
    with psycopg.connect(report["measured"]["conninfo"], password=password(prod), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()[0] == before + 300
        assert (
            conn.execute("SELECT count(*) FROM interface_exceptions WHERE transaction_id LIKE 'walb-b-%'").fetchone()[0]
            == 0
        )
    assert not list(data_dir.parent.glob("wal-bucket-*")), "the bucket's local copy was left behind"


def test_the_chain_check_finds_a_segment_missing_from_the_bucket(lab: Lab, prod: StackOutputs, tmp_path: Path) -> None:
    with connect(prod) as conn:
        insert_rows(conn, f"walb-gap-{time.time_ns()}-", 50)
        wait_archived(conn)
        insert_rows(conn, f"walb-gap2-{time.time_ns()}-", 50)
        wait_archived(conn)
    s3 = store.s3_client(prod)
    assert wal_cli.main(["check", *stack_args(lab)]) == 0
    archive = wal.read_archive(s3, prod.wal_bucket)
    victim = archive.segments[-2]
    body = s3.get_object(Bucket=prod.wal_bucket, Key=wal.wal_key(victim))["Body"].read()
    s3.delete_object(Bucket=prod.wal_bucket, Key=wal.wal_key(victim))
    try:
        code, report = run_cli(wal_cli.main, ["check", *stack_args(lab)], tmp_path / "check.json")
        assert code == 1
        assert report["measured"]["wal_gaps"] == [victim]
        window, window_report = run_cli(
            restore.main, ["pitr", "--window", "--wal-source", "bucket", *stack_args(lab)], tmp_path / "w.json"
        )
        assert window == 1 and not checks(window_report)["WAL chain"]["ok"]
    finally:
        s3.put_object(
            Bucket=prod.wal_bucket,
            Key=wal.wal_key(victim),
            Body=body,
            Metadata={"sha256": hashlib.sha256(body).hexdigest()},
            **store.encryption_args(prod),
        )
