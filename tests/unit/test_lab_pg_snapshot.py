"""The pair's snapshot (lab/postgres.py): what a reset copies back is exactly what was saved, the rest of pg/ kept."""

from __future__ import annotations

import os
from pathlib import Path

from lab import postgres

STACKS = ("prod", "dr")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def pair(layout: postgres.PgLayout) -> None:
    for stack in STACKS:
        (layout.data_dir(stack) / "global").mkdir(parents=True)
        (layout.data_dir(stack) / "global" / "pg_control").write_bytes(f"control of {stack}".encode())
    layout.archive_dir.mkdir()
    (layout.archive_dir / "000000010000000000000002").write_bytes(b"\x01" * 64)
    layout.base_backup_dir.mkdir()
    (layout.base_backup_dir / "base.tar").write_bytes(b"tar")
    layout.template_dir.mkdir()
    (layout.template_dir / "PG_VERSION").write_text("15\n")


def test_restore_puts_back_what_was_saved_and_drops_what_came_after(tmp_path: Path) -> None:
    layout = postgres.PgLayout(tmp_path / "pg")
    pair(layout)
    saved = tree(layout.base)
    assert postgres.restore_snapshot(layout, STACKS) is None  # nothing saved yet: nothing touched
    assert tree(layout.base) == saved
    postgres.save_snapshot(layout, STACKS)
    # What a fault row leaves: a promoted standby's new files, more archived WAL, a damaged control file.
    (layout.data_dir("dr") / "standby.signal").write_text("")
    (layout.data_dir("dr") / "global" / "pg_control").write_bytes(b"promoted")
    (layout.archive_dir / "00000002.history").write_text("1\t0/3000000\tno recovery target\n")
    (layout.base_backup_dir / "base.tar").unlink()
    (layout.data_dir("prod") / "base").mkdir()  # a folder the snapshot lacks, with a file in it
    (layout.data_dir("prod") / "base" / "16384").write_bytes(b"new relation")
    # Only what differs is copied: dr's control file and the base backup; the rest is removed or left alone.
    assert postgres.restore_snapshot(layout, STACKS) == 2
    assert {k: v for k, v in tree(layout.base).items() if not k.startswith("snapshot/")} == saved
    assert not (layout.data_dir("prod") / "base").exists()
    # The snapshot itself is unchanged by the restore: the next reset has nothing to copy.
    assert postgres.restore_snapshot(layout, STACKS) == 0
    assert {k: v for k, v in tree(layout.base).items() if not k.startswith("snapshot/")} == saved


def test_a_file_written_in_place_is_copied_back_even_at_the_same_size(tmp_path: Path) -> None:
    layout = postgres.PgLayout(tmp_path / "pg")
    pair(layout)
    postgres.save_snapshot(layout, STACKS)
    control = layout.data_dir("prod") / "global" / "pg_control"
    before = control.stat()
    with control.open("r+b") as f:  # as PostgreSQL writes a page: in place, same size
        f.write(b"CONTROL")
    os.utime(control, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    assert postgres.restore_snapshot(layout, STACKS) == 1
    assert control.read_bytes() == b"control of prod"


def test_a_new_save_replaces_the_old_one_whole(tmp_path: Path) -> None:
    layout = postgres.PgLayout(tmp_path / "pg")
    pair(layout)
    postgres.save_snapshot(layout, STACKS)
    (layout.archive_dir / "000000010000000000000002").unlink()
    (layout.archive_dir / "000000010000000000000003").write_bytes(b"\x03")
    postgres.save_snapshot(layout, STACKS)
    assert sorted(p.name for p in (layout.snapshot_dir / "archive").iterdir()) == ["000000010000000000000003"]
    assert not layout.snapshot_dir.with_name("snapshot.partial").exists()
    assert postgres.snapshot_parts(layout, STACKS) == [
        layout.base / "prod",
        layout.base / "dr",
        layout.archive_dir,
        layout.base_backup_dir,
    ]
