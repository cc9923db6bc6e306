"""Which PostgreSQL programs run: an explicit folder first, else the newest installed major, else PATH; never a
major hard-coded in the code (the backup image installs its PG_MAJOR only, the lab its PostgreSQL 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drtopo.database.pg_tools import PgToolError, binary, installed_bin_dirs


def install(root: Path, major: str, *programs: str) -> Path:
    folder = root / major / "bin"
    folder.mkdir(parents=True)
    for program in programs:
        (folder / program).write_text("#!/bin/sh\n")
    return folder


def test_the_newest_installed_major_comes_first(tmp_path: Path) -> None:
    for major in ("13", "17", "15"):
        install(tmp_path, major, "pg_dump")
    (tmp_path / "common").mkdir()  # Debian's postgresql-common keeps non-major folders here too
    assert installed_bin_dirs(tmp_path) == [tmp_path / m / "bin" for m in ("17", "15", "13")]
    assert binary("pg_dump", root=tmp_path) == str(tmp_path / "17" / "bin" / "pg_dump")


def test_an_explicit_folder_wins_and_a_missing_program_falls_through_to_older_majors(tmp_path: Path) -> None:
    own = install(tmp_path / "own", "15", "pg_ctl")
    install(tmp_path / "root", "16", "pg_dump")
    install(tmp_path / "root", "15", "pg_dump", "pg_restore")
    assert binary("pg_ctl", str(own), root=tmp_path / "root") == str(own / "pg_ctl")
    assert binary("pg_restore", root=tmp_path / "root") == str(tmp_path / "root" / "15" / "bin" / "pg_restore")


def test_a_program_found_nowhere_names_where_it_was_looked_for(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PgToolError, match=r"pg_dump not found in .*<major>/bin or on PATH"):
        binary("pg_dump", root=tmp_path / "none")
