"""The WAL bucket's pure parts: which names are archive files, their keys, the archive command's substitutions and
quoting, the lab agent's refusals, and the restore flags that do not go together."""

from __future__ import annotations

from pathlib import Path

import pytest

from drtopo.backup import wal
from drtopo.database.pitr import archive_command_line, segment_distance
from drtopo.report import BadInput
from lab import postgres
from lab.wal_agent import Agent, client_script
from scripts import restore
from scripts import wal as wal_cli


@pytest.mark.parametrize(
    "name",
    [
        "000000010000000000000003",
        "00000002.history",
        "000000010000000000000003.00000028.backup",
        "000000010000000000000004.partial",
    ],
)
def test_what_postgresql_archives_is_accepted(name: str) -> None:
    assert wal.wal_key(name) == f"wal/{name}"


@pytest.mark.parametrize("name", ["../etc/passwd", "0000000100000000000000", "wal/000000010000000000000003", "x", ""])
def test_anything_else_is_refused_by_name(name: str) -> None:
    with pytest.raises(BadInput, match="not a WAL archive file name"):
        wal.archive_name(name)


def test_base_backups_live_under_their_start_wal_file() -> None:
    assert wal.base_key("000000010000000000000002", "base.tar") == "basebackups/000000010000000000000002/base.tar"
    with pytest.raises(BadInput):
        wal.base_key("../x", "base.tar")


def test_the_archive_command_gets_postgresql_substitutions() -> None:
    line = archive_command_line('cp "%p" "/a/%f" && echo 100%% done', Path("/s/0000000200000000000000A1"), "N")
    assert line == 'cp "/s/0000000200000000000000A1" "/a/N" && echo 100% done'


def test_the_lab_archive_command_is_idempotent_and_then_pushes() -> None:
    command = postgres.archive_command(Path("/lab/pg/archive"), "/lab/bin/wal-push prod %f")
    assert command.startswith('{ if test -f "/lab/pg/archive/%f"; then cmp -s "%p" "/lab/pg/archive/%f";')
    assert command.endswith("&& /lab/bin/wal-push prod %f")
    assert "archive_command = '" in postgres.instance_conf("prod", 5432, command)
    with pytest.raises(ValueError, match="single quote"):
        postgres.archive_command(Path("/a"), "echo 'x'")


def test_the_agent_answers_every_bad_request_with_one_error_line(tmp_path: Path) -> None:
    agent = Agent(tmp_path, tmp_path, "http://127.0.0.1:9", ["prod", "dr"])
    assert agent.handle("fetch prod x\n").startswith("error: 'fetch prod x' is not a request")
    assert agent.handle("push staging 000000010000000000000003") == (
        "error: stack 'staging' is not one of the lab's prod, dr"
    )
    assert "not a WAL archive file name" in agent.handle("push prod ../../etc/shadow")
    assert agent.handle("").startswith("error:")


def test_the_client_script_talks_to_loopback_only(tmp_path: Path) -> None:
    text = client_script(tmp_path / "wal-push", 4321)
    assert text.startswith("#!/bin/bash\n")
    assert "exec 3<>/dev/tcp/127.0.0.1/4321" in text
    assert '[ "$reply" = ok ]' in text


def test_a_restore_from_the_bucket_is_not_a_cutover(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["pitr", "--stack", "prod", "--time", "2026-12-01T10:00:00Z", "--cutover", "--damage-xid", "9"]
    with pytest.raises(SystemExit) as exit_info:
        restore.main([*args, "--wal-source", "bucket"])
    assert exit_info.value.code == 2
    assert "--wal-source bucket is not for --cutover" in capsys.readouterr().err


def test_wal_names_are_checked_before_anything_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    assert wal_cli.main(["fetch", "../../x", "/tmp/y", "--stack", "prod", "--outputs", "/nonexistent.json"]) == 2
    assert "not a WAL archive file name" in capsys.readouterr().err


def test_the_archiver_backlog_is_counted_in_segments_of_the_servers_size() -> None:
    mb = 1024 * 1024
    # 1 MB segments: 4096 per 4 GB "log", so ...00000FFF is followed by ...0000010000000000.
    assert segment_distance("000000010000000000000FFF", "000000010000000100000002", mb) == "3"
    assert segment_distance("000000010000000000000010", "000000010000000000000010", 16 * mb) == "0"
    assert segment_distance(None, "000000010000000000000010", 16 * mb) == "?"
    assert segment_distance("000000010000000000000012", "000000010000000000000010", 16 * mb) == "0"
