"""Each safety check shown failing on the lab, for the fault it is there to catch.

- `db.split_brain` (scripts.validate): with prod and dr both accepting writes (dr promoted with pg_promote(), prod
  left as it was), the check fails with value 2 and validate exits 1; with the pair as built it passes with value 1.
- The failover lock (drtopo.failover.lock) on the emulator's configuration bucket: racing `acquire`s behind a barrier,
  exactly one wins and every other is refused naming the winner; a holder on this host whose process is gone is taken
  over, a live one is refused, a holder on another host is refused unless the lock is broken on request.
- A restore from the WAL bucket refuses a gap: one archived segment deleted after the base backup, `scripts.restore
  pitr --wal-source bucket` exits 2 naming it before anything is laid out, and the source is untouched.
- A base backup's label goes up last: the product's own upload calls, recorded through boto3's event hooks on a real
  client, put the label after every part of the backup (and the bucket's LastModified agrees); an upload cut off before
  its label leaves a backup that is not offered for a restore.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from bench.switchover import connect, outputs, run_cli, server_state
from drtopo.backup import store, wal
from drtopo.database.connect import connect as connect_outputs
from drtopo.database.pitr.cutover import wait_archived
from drtopo.failover.lock import FailoverLock, Owner, lock_key
from drtopo.outputs import StackOutputs
from drtopo.report import Unsafe
from lab.core import Lab
from tests.integration.backup_helpers import empty_bucket, insert_rows

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


# ---- db.split_brain ---------------------------------------------------------------------------------------------


def validate_dr(lab: Lab, tmp_path: Path) -> tuple[int, dict[str, Any], str]:
    report = tmp_path / f"validate-{time.monotonic_ns()}.json"
    proc = run_cli(
        "validate",
        "--stack",
        "dr",
        "--outputs",
        lab.dr.outputs_path,
        "--json",
        report,
        "--skip",
        "service",
        "--skip",
        "kafka",
        "--expect",
        "standby",  # dr as the pair was built; the split brain is what is checked
        timeout=120,
    )
    assert report.is_file(), proc.stderr
    return proc.returncode, json.loads(report.read_text()), proc.stderr


@pytest.mark.parametrize(
    ("writers", "outcome", "value", "exit_code"),
    [
        ("prod only (the pair as built)", "pass", 1, 0),
        ("prod and dr (dr promoted, prod not fenced)", "fail", 2, 1),
    ],
)
def test_split_brain_check_fails_when_both_databases_accept_writes(
    fresh_pg: Lab, tmp_path: Path, writers: str, outcome: str, value: int, exit_code: int
) -> None:
    with connect(fresh_pg, "prod") as prod, connect(fresh_pg, "dr") as dr:
        insert_rows(prod, f"split-{time.time_ns()}-", 20)  # records for validate's other database checks
        lsn = prod.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + 30
        while not dr.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            assert time.monotonic() < deadline, f"dr did not replay up to {lsn}"
            time.sleep(0.05)
    try:
        if "dr promoted" in writers:
            with connect(fresh_pg, "dr") as dr:
                assert dr.execute("SELECT pg_promote(wait => true, wait_seconds => 30)").fetchone()[0] is True
        # The fault as the servers themselves show it, read without the product.
        writable = {
            s for s in ("prod", "dr") if server_state(fresh_pg, s) == {"in_recovery": False, "default_read_only": "off"}
        }
        assert len(writable) == value, writable

        code, report, stderr = validate_dr(fresh_pg, tmp_path)

        check = next(c for c in report["checks"] if c["name"] == "db.split_brain")
        assert (check["outcome"], check["value"], check["limit"]) == (outcome, value, 1), check
        failing = sorted(c["name"] for c in report["checks"] if c["outcome"] == "fail")
        assert failing == ([] if outcome == "pass" else ["db.split_brain"]), report["checks"]
        assert code == exit_code, stderr
        assert report["ok"] is (exit_code == 0)
        if outcome == "fail":
            assert "dr" in check["detail"] and "prod" in check["detail"], check
    finally:
        if "dr promoted" in writers:
            fresh_pg.reset_postgres()


# ---- the failover lock ------------------------------------------------------------------------------------------


@pytest.fixture
def lock_outputs(lab: Lab) -> Iterator[StackOutputs]:
    """dr's outputs (the lock lives in the configuration bucket of the stack a run makes primary); no lock object
    before or after the test."""
    dr = outputs(lab, "dr")
    s3 = store.s3_client(dr)
    s3.delete_object(Bucket=dr.config_bucket, Key=lock_key(dr.stack))
    yield dr
    s3.delete_object(Bucket=dr.config_bucket, Key=lock_key(dr.stack))


def test_racing_acquires_on_the_real_bucket_exactly_one_wins_and_the_rest_name_it(lock_outputs: StackOutputs) -> None:
    racers = 8
    locks = [FailoverLock(lock_outputs) for _ in range(racers)]
    barrier = threading.Barrier(racers, timeout=30)
    won: list[tuple[int, Owner]] = []
    refused: list[tuple[int, str]] = []
    other: list[tuple[int, BaseException]] = []

    def race(i: int) -> None:
        barrier.wait()
        try:
            won.append((i, locks[i].acquire(f"race-{i}", "dr")))
        except Unsafe as exc:
            refused.append((i, str(exc)))
        except BaseException as exc:  # anything else: shown by the assertion below
            other.append((i, exc))

    threads = [threading.Thread(target=race, args=(i,), name=f"lock-race-{i}") for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    assert not other, other
    assert len(won) == 1, won
    assert len(refused) == racers - 1, refused
    winner, owner = won[0]
    assert owner.operation == f"race-{winner}"
    # The bucket's lock object names the winner, and every refusal names it too (never a loser).
    assert locks[0].holder() == owner
    for i, message in refused:
        assert i != winner
        assert "another failover holds the lock" in message, message
        assert f"race-{winner} of dr by pid {os.getpid()} on {socket.gethostname()}" in message, message
    locks[winner].release()
    assert locks[0].holder() is None


HOLDER = """
import sys
from drtopo.failover.lock import FailoverLock
from drtopo.outputs import load_outputs
owner = FailoverLock(load_outputs(sys.argv[1], "dr")).acquire("promote", "dr")
print(owner.pid, flush=True)
if sys.argv[2] == "stay":
    sys.stdin.read()
"""


def holder_process(lab: Lab, stay: bool) -> subprocess.Popen[str]:
    """A process that takes the lock with the product's own code and exits at once without releasing it (a run that
    died), or keeps running until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lab.dr.outputs_path), "stay" if stay else "exit"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == str(proc.pid), line
    if not stay:
        assert proc.wait(timeout=30) == 0
    return proc


@pytest.mark.parametrize(
    ("holder", "break_lock", "granted"),
    [
        ("this host, process gone", False, True),
        ("this host, process alive", False, False),
        ("this host, process alive", True, True),
        ("another host", False, False),
        ("another host", True, True),
    ],
)
def test_lock_left_by_a_holder_is_taken_over_only_when_that_holder_is_gone_or_broken_on_request(
    lab: Lab, lock_outputs: StackOutputs, holder: str, break_lock: bool, granted: bool
) -> None:
    lock = FailoverLock(lock_outputs)
    child: subprocess.Popen[str] | None = None
    try:
        if holder.startswith("this host"):
            child = holder_process(lab, stay=holder.endswith("alive"))
            held = lock.holder()
            assert held is not None and (held.host, held.pid) == (socket.gethostname(), child.pid)
            # The fault as the system shows it: the holder's process is gone (reaped) or alive.
            assert (child.poll() is None) is holder.endswith("alive")
        else:
            with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
                gone.wait(timeout=30)
            held = Owner("drill-host.elsewhere.invalid", gone.pid, "promote", "dr", "2026-01-01T00:00:00+00:00")
            lock.s3.put_object(
                Bucket=lock.bucket, Key=lock.key, Body=json.dumps(dataclasses.asdict(held)).encode(), IfNoneMatch="*"
            )
            assert lock.holder() == held

        if granted:
            mine = lock.acquire("failback", "dr", break_lock=break_lock)
            assert (mine.host, mine.pid, mine.operation) == (socket.gethostname(), os.getpid(), "failback")
            assert lock.holder() == mine
        else:
            with pytest.raises(Unsafe) as refused:
                lock.acquire("failback", "dr", break_lock=break_lock)
            assert f"by pid {held.pid} on {held.host}" in str(refused.value)
            assert "--break-lock" in str(refused.value)
            assert lock.holder() == held  # the holder's lock is left as it was
            assert lock.held is None
    finally:
        if child is not None and child.poll() is None:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)


def test_a_live_holder_refused_is_taken_over_once_its_process_is_gone(lab: Lab, lock_outputs: StackOutputs) -> None:
    lock = FailoverLock(lock_outputs)
    child = holder_process(lab, stay=True)
    try:
        with pytest.raises(Unsafe, match=f"by pid {child.pid} on "):
            lock.acquire("promote", "dr")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    assert lock.holder() is not None and lock.holder().pid == child.pid  # it died holding the lock
    assert lock.acquire("promote", "dr").pid == os.getpid()


# ---- a restore from the WAL bucket refuses a gap ----------------------------------------------------------------


def test_a_restore_from_the_bucket_refuses_a_missing_segment_before_any_replay(
    lab: Lab, prod: StackOutputs, tmp_path: Path
) -> None:
    assert prod.self_managed is not None
    s3 = store.s3_client(prod)
    base_backups = wal.read_archive(s3, prod.wal_bucket).base_backups
    assert base_backups, "the lab's base backup is not in the WAL bucket"
    with connect_outputs(prod) as conn:
        for n in range(4):  # several switched segments after the base backup
            insert_rows(conn, f"gap-{n}-{time.time_ns()}-", 50)
            wait_archived(conn)
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        rows_before = conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()[0]
    segments = wal.read_archive(s3, prod.wal_bucket).segments
    newest_base = max(base_backups)
    victim = segments[-2]
    assert victim > newest_base and victim[:8] == newest_base[:8], (victim, newest_base)
    body = s3.get_object(Bucket=prod.wal_bucket, Key=wal.wal_key(victim))["Body"].read()
    s3.delete_object(Bucket=prod.wal_bucket, Key=wal.wal_key(victim))
    pitr_dirs = set(Path(prod.self_managed.data_dir).parent.iterdir())
    report = tmp_path / "pitr.json"
    try:
        proc = run_cli(
            "restore",
            "pitr",
            "--time",
            target.isoformat(),
            "--wal-source",
            "bucket",
            "--stack",
            "prod",
            "--outputs",
            lab.prod.outputs_path,
            "--json",
            report,
            timeout=300,
        )
    finally:
        s3.put_object(
            Bucket=prod.wal_bucket,
            Key=wal.wal_key(victim),
            Body=body,
            Metadata={"sha256": hashlib.sha256(body).hexdigest()},
            **store.encryption_args(prod),
        )

    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: s3://{prod.wal_bucket} misses "), last
    assert f"first {victim}" in last, last
    assert "Traceback" not in proc.stderr
    if report.exists():  # a report, when written, says the same and shows no restore began
        data = json.loads(report.read_text())
        assert data["measured"].get("wal_gaps", [victim])[0] == victim
        assert "data_dir" not in data["measured"]
    # Nothing laid out, nothing replayed: no new folder beside the data directories (no pitr-*, no wal-bucket-* copy).
    assert set(Path(prod.self_managed.data_dir).parent.iterdir()) == pitr_dirs
    # The source is untouched: still the writable primary, with the rows it had.
    assert server_state(lab, "prod") == {"in_recovery": False, "default_read_only": "off"}
    with connect_outputs(prod) as conn:
        assert conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()[0] == rows_before


# ---- the base backup's label goes up last -----------------------------------------------------------------------


class UploadRecorder:
    """Every S3 call a real boto3 client makes, in order: ('start'|'done', operation, key), from botocore's events.
    `cut_before_label` raises before the label's PutObject is sent (an upload that died there)."""

    def __init__(self, client: Any, cut_before_label: bool = False) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.cut = cut_before_label
        self._lock = threading.Lock()
        client.meta.events.register("before-parameter-build.s3", self._start)
        client.meta.events.register("after-call.s3", self._done)

    def _start(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        key = params.get("Key", "")
        context["recorded_key"] = key
        with self._lock:
            self.events.append(("start", model.name, key))
        if self.cut and model.name == "PutObject" and key.endswith("/" + wal.LABEL_OBJECT):
            raise ConnectionAbortedError("the uploading host died before the label")

    def _done(self, http_response: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
        if 200 <= http_response.status_code < 300:
            with self._lock:
                self.events.append(("done", model.name, context.get("recorded_key", "")))

    def index(self, phase: str, operations: tuple[str, ...], key: str) -> list[int]:
        return [i for i, (p, op, k) in enumerate(self.events) if p == phase and op in operations and k == key]


@pytest.fixture
def scratch_wal_bucket(lab: Lab, prod: StackOutputs) -> Iterator[StackOutputs]:
    """prod's outputs with a WAL bucket of the test's own in the emulator (removed afterwards)."""
    name = f"drtopo-label-order-{time.time_ns()}"
    s3 = boto3.client("s3", region_name=prod.region)
    if prod.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": prod.region})
    yield prod.model_copy(update={"wal_bucket": name})
    empty_bucket(prod.region, name)
    s3.delete_bucket(Bucket=name)


def test_the_base_backup_label_is_uploaded_last_and_a_backup_without_it_is_not_offered(
    lab: Lab, scratch_wal_bucket: StackOutputs, tmp_path: Path
) -> None:
    target = scratch_wal_bucket
    folder = lab.pg.base_backup_dir
    parts = [f for f in wal.BASE_FILES if (folder / f).is_file()]
    assert wal.BASE_FILES[0] in parts

    # An upload cut off just before its label: the parts are in the bucket, the backup is not offered.
    cut = store.s3_client(target)
    recorder = UploadRecorder(cut, cut_before_label=True)
    with pytest.raises(ConnectionAbortedError):
        wal.push_base_backup(cut, target, folder)
    start = next(k for _, op, k in recorder.events if op == "PutObject" and k.endswith(wal.LABEL_OBJECT)).split("/")[1]
    in_bucket = wal.listing(cut, target.wal_bucket, wal.BASE_PREFIX)
    assert set(in_bucket) == {f"{start}/{p}" for p in parts}, in_bucket
    assert wal.read_archive(cut, target.wal_bucket).base_backups == []
    window = window_of(lab, target, tmp_path)
    assert window.returncode == 2, window.stderr
    assert f"s3://{target.wal_bucket} holds no base backup" in window.stderr.strip().splitlines()[-1]

    # The whole upload, recorded: the label's PutObject starts only after every part's upload has completed.
    s3 = store.s3_client(target)
    recorder = UploadRecorder(s3)
    assert wal.push_base_backup(s3, target, folder) == start
    label_key = wal.base_key(start, wal.LABEL_OBJECT)
    (label_start,) = recorder.index("start", ("PutObject",), label_key)
    (label_done,) = recorder.index("done", ("PutObject",), label_key)
    for part in parts:
        key = wal.base_key(start, part)
        completed = recorder.index("done", ("PutObject", "CompleteMultipartUpload"), key)
        assert len(completed) == 1, (part, recorder.events)
        assert completed[0] < label_start < label_done, (part, recorder.events)
        assert not [i for i, (_, _, k) in enumerate(recorder.events) if k == key and i > label_start], part
    # The bucket agrees: the label's LastModified is not before any part's.
    modified = {
        o["Key"]: o["LastModified"]
        for o in s3.list_objects_v2(Bucket=target.wal_bucket, Prefix=f"{wal.BASE_PREFIX}{start}/")["Contents"]
    }
    assert set(modified) == {label_key, *(wal.base_key(start, p) for p in parts)}
    assert all(modified[label_key] >= modified[wal.base_key(start, p)] for p in parts), modified
    # With its label, the same backup is offered.
    assert wal.read_archive(s3, target.wal_bucket).base_backups == [start]


def window_of(lab: Lab, target: StackOutputs, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`scripts.restore pitr --window --wal-source bucket` on prod with `target`'s WAL bucket."""
    folder = tmp_path / "outputs"
    folder.mkdir(exist_ok=True)
    document = json.loads(lab.prod.outputs_path.read_text())
    (folder / "prod.json").write_text(json.dumps({**document, "walBucket": target.wal_bucket}))
    (folder / "dr.json").write_text(lab.dr.outputs_path.read_text())
    return run_cli(
        "restore", "pitr", "--window", "--wal-source", "bucket", "--stack", "prod", "--outputs", folder / "prod.json"
    )
