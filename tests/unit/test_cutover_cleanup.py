"""What `restore cleanup` may remove after a cutover (drtopo/database/pitr/cutover.py: `left_behind`, `removable`),
on real folders: the damaged copy and the scratch WAL beside the data directory, never the live data directory, a
link, a folder named otherwise or elsewhere, or one a server runs in; and the command's dry run and removal."""

from __future__ import annotations

from pathlib import Path

import pytest

from drtopo.backup.restore import cleanup
from drtopo.database.pitr.cutover import left_behind, removable
from drtopo.outputs import SelfManagedPostgres, StackOutputs
from drtopo.report import BadInput, Report
from tests.unit.test_database_platform import RDS_ARN, outputs

STAMP = "20261202T032359Z"


@pytest.fixture
def pg(tmp_path: Path) -> Path:
    """A folder as a self-managed server's after a cutover: the live `prod`, its damaged copy, the scratch WAL."""
    root = tmp_path / "pg"
    for name in ("prod", f"prod-damaged-{STAMP}", f"pitr-{STAMP}.wal", "dr", f"dr-damaged-{STAMP}", "basebackup"):
        (root / name).mkdir(parents=True)
    (root / "prod" / "PG_VERSION").write_text("15\n")
    (root / f"prod-damaged-{STAMP}" / "PG_VERSION").write_text("15\n")
    (root / f"pitr-{STAMP}.wal" / "000000020000000000000005").write_bytes(b"x" * 1024)
    return root


def test_left_behind_names_only_this_servers_damaged_copies_and_scratch_wal(pg: Path) -> None:
    assert [p.name for p in left_behind(pg / "prod")] == [f"pitr-{STAMP}.wal", f"prod-damaged-{STAMP}"]


def test_the_damaged_copy_and_the_scratch_wal_are_removable(pg: Path) -> None:
    assert removable(pg / "prod", pg / f"prod-damaged-{STAMP}") == (pg / f"prod-damaged-{STAMP}").resolve()
    assert removable(pg / "prod", pg / f"pitr-{STAMP}.wal") == (pg / f"pitr-{STAMP}.wal").resolve()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("prod", "is (or holds) the live data directory"),
        ("prod/base", "is (or holds) the live data directory"),
        (".", "is (or holds) the live data directory"),
        ("prod-damaged-20261202T032359Z/../prod", "is (or holds) the live data directory"),
        ("dr-damaged-20261202T032359Z", "is not named as a cutover leaves things"),
        ("basebackup", "is not named as a cutover leaves things"),
        ("prod-damaged-yesterday", "is not named as a cutover leaves things"),
        ("../elsewhere/prod-damaged-20261202T032359Z", "is not beside the data directory"),
        ("prod-damaged-20261202T999999Z", "is not a directory"),
    ],
)
def test_anything_else_is_refused_naming_it(pg: Path, path: str, message: str) -> None:
    (pg.parent / "elsewhere" / f"prod-damaged-{STAMP}").mkdir(parents=True)
    with pytest.raises(BadInput) as refused:
        removable(pg / "prod", pg / path)
    assert str(refused.value).startswith(f"{pg / path} {message}")


def test_a_link_to_the_live_data_directory_or_beside_it_is_refused(pg: Path) -> None:
    link = pg / "prod-damaged-20261203T000000Z"
    link.symlink_to(pg / "prod")
    with pytest.raises(BadInput, match="live data directory"):
        removable(pg / "prod", link)
    other = pg / "pitr-20261203T000000Z.wal"
    other.symlink_to(pg / f"pitr-{STAMP}.wal")
    with pytest.raises(BadInput, match="symbolic link"):
        removable(pg / "prod", other)


def test_a_folder_a_server_runs_in_is_refused(pg: Path) -> None:
    (pg / f"prod-damaged-{STAMP}" / "postmaster.pid").write_text("4242\n")
    with pytest.raises(BadInput, match=r"postmaster\.pid"):
        removable(pg / "prod", pg / f"prod-damaged-{STAMP}")


def _outputs(pg: Path) -> StackOutputs:
    server = SelfManagedPostgres(
        bin_dir="/usr/lib/postgresql/15/bin",
        data_dir=str(pg / "prod"),
        archive_dir=str(pg / "archive"),
        base_backup_dir=str(pg / "basebackup"),
    )
    return outputs(RDS_ARN, server)


def test_cleanup_dry_run_removes_nothing_then_removes_only_what_the_cutover_left(pg: Path) -> None:
    stack = _outputs(pg)
    report = Report()
    lines = cleanup(stack, report, [], dry_run=True)
    assert [line.split(" (")[0] for line in lines] == [
        f"would remove {(pg / f'pitr-{STAMP}.wal').resolve()}",
        f"would remove {(pg / f'prod-damaged-{STAMP}').resolve()}",
    ]
    assert (pg / f"prod-damaged-{STAMP}").is_dir() and (pg / f"pitr-{STAMP}.wal").is_dir()
    assert report.measured["cleanup"][str((pg / f"pitr-{STAMP}.wal").resolve())] == 1024
    cleanup(stack, Report(), [pg / f"prod-damaged-{STAMP}"], dry_run=False)
    assert not (pg / f"prod-damaged-{STAMP}").exists()
    assert (pg / f"pitr-{STAMP}.wal").is_dir() and (pg / "prod" / "PG_VERSION").is_file()
    with pytest.raises(BadInput, match="live data directory"):
        cleanup(stack, Report(), [pg / f"pitr-{STAMP}.wal", pg / "prod"], dry_run=False)
    assert (pg / f"pitr-{STAMP}.wal").is_dir(), "nothing is removed when one path is refused"
