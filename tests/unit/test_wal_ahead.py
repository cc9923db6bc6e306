"""WAL archiving ahead (drtopo/backup/wal_ahead.py): which files go beside the one PostgreSQL asks for, that an
acknowledgement is honoured only for the very file it was written for, and only after the bucket stored it; the
CLI's and the lab agent's refusals. The uploads themselves run against the emulator in
tests/integration/test_wal_bucket.py."""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from drtopo.backup import wal, wal_ahead
from drtopo.backup.wal_ahead import Identity, Spool
from drtopo.report import BadInput
from lab.wal_agent import Agent
from scripts import wal as wal_cli

SEGMENTS = [f"0000000100000000000000{i:02X}" for i in range(10, 16)]


def pg_wal(tmp_path: Path, ready: list[str], done: tuple[str, ...] = ()) -> Path:
    """A pg_wal folder whose archive_status marks `ready` (and `done`), each file with its own bytes."""
    folder = tmp_path / "data" / "pg_wal"
    (folder / "archive_status").mkdir(parents=True)
    for name in [*ready, *done]:
        (folder / name).write_bytes(name.encode() * 8)
    for name in ready:
        (folder / "archive_status" / f"{name}.ready").touch()
    for name in done:
        (folder / "archive_status" / f"{name}.done").touch()
    (folder / "archive_status" / "junk.ready").touch()
    return folder


def test_the_archivers_order_is_history_files_first_then_wal_order() -> None:
    backup = f"{SEGMENTS[1]}.00000028.backup"
    names = [SEGMENTS[2], "00000002.history", SEGMENTS[0], backup]
    assert wal_ahead.archive_order(names) == ["00000002.history", SEGMENTS[0], backup, SEGMENTS[2]]


def test_ready_files_are_the_marked_archive_names_only(tmp_path: Path) -> None:
    folder = pg_wal(tmp_path, [SEGMENTS[3], SEGMENTS[1]], done=(SEGMENTS[0],))
    assert wal_ahead.ready_names(folder) == [SEGMENTS[1], SEGMENTS[3]]
    assert wal_ahead.ready_names(tmp_path / "nowhere") == []


@pytest.mark.parametrize("text", ["0", "33", "four", "-1", ""])
def test_a_parallel_count_out_of_range_is_refused_by_value(text: str) -> None:
    with pytest.raises(BadInput, match=f"parallel uploads {text!r}; expected a whole number from 1 to 32"):
        wal_ahead.parallel_count(text)


def test_look_ahead_takes_the_next_unacknowledged_files_up_to_parallel_minus_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.mark(SEGMENTS[1], Identity(1, 2, 3, 4, 5))
    assert wal_ahead.look_ahead(SEGMENTS, SEGMENTS[0], spool, 4) == [SEGMENTS[2], SEGMENTS[3], SEGMENTS[4]]
    assert wal_ahead.look_ahead(SEGMENTS, SEGMENTS[0], spool, 1) == []


def test_an_acknowledgement_is_honoured_once_and_only_for_the_same_file(tmp_path: Path) -> None:
    folder = pg_wal(tmp_path, SEGMENTS[:2])
    spool = Spool(tmp_path / "spool")
    spool.mark(SEGMENTS[0], Identity.of(folder / SEGMENTS[0]))
    assert spool.take(SEGMENTS[0], folder / SEGMENTS[0])
    assert not spool.take(SEGMENTS[0], folder / SEGMENTS[0]), "consumed by the first request"
    # A file of the same name that is not the one uploaded (recycled, restored): the acknowledgement is refused.
    spool.mark(SEGMENTS[1], Identity.of(folder / SEGMENTS[1]))
    os.replace(folder / SEGMENTS[0], folder / SEGMENTS[1])
    assert not spool.take(SEGMENTS[1], folder / SEGMENTS[1])
    (spool.folder / f"{SEGMENTS[2]}.ok").write_text("not an identity")
    assert not spool.take(SEGMENTS[2], folder / SEGMENTS[0])
    assert not list(spool.folder.iterdir()), "taking consumes every acknowledgement, honoured or not"


def test_prune_drops_acknowledgements_of_files_no_longer_ready(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for name in SEGMENTS[:3]:
        spool.mark(name, Identity(1, 2, 3, 4, 5))
    assert spool.prune({SEGMENTS[1]}) == 2
    assert [p.name for p in spool.folder.iterdir()] == [f"{SEGMENTS[1]}.ok"]


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`wal.push` recorded: the names stored, the most at once, and names made to fail."""
    seen: dict[str, Any] = {"stored": [], "running": 0, "most": 0, "fail": set()}
    lock = threading.Lock()
    barrier = threading.Barrier(4, timeout=5)

    def push(s3: Any, outputs: Any, path: Path, name: str) -> str:
        with lock:
            seen["running"] += 1
            seen["most"] = max(seen["most"], seen["running"])
        try:
            if seen.get("together"):
                barrier.wait()  # all four in flight at once, or this raises
            if name in seen["fail"]:
                raise OSError(f"upload of {name} failed")
            assert path.read_bytes() == name.encode() * 8, "the bytes pushed are the named file's"
            with lock:
                seen["stored"].append(name)
            return f"{name} archived"
        finally:
            with lock:
                seen["running"] -= 1

    monkeypatch.setattr(wal, "push", push)
    return seen


def test_a_request_uploads_the_next_ready_files_beside_it_at_once(tmp_path: Path, uploads: dict[str, Any]) -> None:
    folder = pg_wal(tmp_path, SEGMENTS)
    spool = Spool(tmp_path / "spool")
    uploads["together"] = True
    first = wal_ahead.push(None, None, folder, SEGMENTS[0], folder / SEGMENTS[0], spool, 4)  # type: ignore[arg-type]
    assert not first.from_spool and first.ahead == tuple(SEGMENTS[1:4]) and not first.ahead_failed
    assert uploads["most"] == 4 and sorted(uploads["stored"]) == SEGMENTS[:4]
    uploads["together"] = False
    status = folder / "archive_status"
    for done, name in itertools.pairwise(SEGMENTS[:4]):
        # PostgreSQL's next requests, each after marking the last done: answered from the spool, nothing uploaded again
        (status / f"{done}.ready").rename(status / f"{done}.done")
        pushed = wal_ahead.push(None, None, folder, name, folder / name, spool, 4)  # type: ignore[arg-type]
        assert pushed.from_spool
    assert len(uploads["stored"]) == 4


def test_a_failed_look_ahead_leaves_no_acknowledgement(tmp_path: Path, uploads: dict[str, Any]) -> None:
    folder = pg_wal(tmp_path, SEGMENTS[:3])
    spool = Spool(tmp_path / "spool")
    uploads["fail"] = {SEGMENTS[1]}
    pushed = wal_ahead.push(None, None, folder, SEGMENTS[0], folder / SEGMENTS[0], spool, 3)  # type: ignore[arg-type]
    assert pushed.ahead_failed == (SEGMENTS[1],)
    assert not spool.has(SEGMENTS[1]) and spool.has(SEGMENTS[2])
    uploads["fail"] = set()
    again = wal_ahead.push(None, None, folder, SEGMENTS[1], folder / SEGMENTS[1], spool, 3)  # type: ignore[arg-type]
    assert not again.from_spool and SEGMENTS[1] in uploads["stored"]


def test_the_own_files_failure_is_raised_for_postgresql_to_retry(tmp_path: Path, uploads: dict[str, Any]) -> None:
    folder = pg_wal(tmp_path, SEGMENTS[:2])
    uploads["fail"] = {SEGMENTS[0]}
    with pytest.raises(OSError, match=f"upload of {SEGMENTS[0]} failed"):
        wal_ahead.push(None, None, folder, SEGMENTS[0], folder / SEGMENTS[0], Spool(tmp_path / "s"), 2)  # type: ignore[arg-type]
    assert uploads["stored"] == [SEGMENTS[1]]


def test_the_cli_refuses_parallel_without_a_spool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    segment = tmp_path / SEGMENTS[0]
    segment.write_bytes(b"x")
    code = wal_cli.main(["push", str(segment), SEGMENTS[0], "--stack", "prod", "--parallel", "4"])
    assert code == 2
    assert "--parallel 4 needs --spool DIR" in capsys.readouterr().err


def test_the_agent_takes_look_ahead_only_for_a_data_directory_of_the_lab(tmp_path: Path) -> None:
    folder = pg_wal(tmp_path, SEGMENTS[:1])
    agent = Agent(tmp_path, tmp_path, "http://127.0.0.1:9", ["prod"], 4, tmp_path / "spool", tmp_path)
    assert agent._wal_dir(str(folder.parent)) == folder.resolve()
    assert agent._wal_dir("/etc") is None
    assert Agent(tmp_path, tmp_path, "http://127.0.0.1:9", ["prod"])._wal_dir(str(folder.parent)) is None
    assert agent.handle("push prod a b c d\n").startswith("error: 'push prod a b c d' is not a request")
