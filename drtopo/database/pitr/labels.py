"""Base backups as recovery knows them: the `backup_label` (plain, inside base.tar, or fetched from the WAL bucket),
its start WAL file and times, and the choice of the newest backup consistent before T."""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drtopo.report import BadInput


@dataclass(frozen=True)
class BaseBackup:
    path: Path
    start_wal: str  # WAL file name holding the backup's start
    start_time: datetime
    stop_time: datetime | None  # from the archived backup history file, when there is one

    @property
    def consistent_at(self) -> datetime:
        """The earliest time recovery from this backup can stop at (the backup's end; its start if unknown)."""
        return self.stop_time or self.start_time


_LABEL_TIME = re.compile(r"^(START|STOP) TIME: (.+)$", re.M)
_LABEL_WAL = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.M)


def parse_label_time(text: str) -> datetime:
    """`2026-11-27 15:52:27 UTC` (a backup label's time) as an aware datetime."""
    stamp, _, zone = text.strip().rpartition(" ")
    value = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
    if zone in ("UTC", "GMT"):
        return value.replace(tzinfo=UTC)
    raise ValueError(f"backup label time {text!r} is not in UTC; expected the server's log_timezone to be UTC")


def parse_backup_label(text: str) -> tuple[str, dict[str, datetime]]:
    wal = _LABEL_WAL.search(text)
    if wal is None:
        raise ValueError("backup label has no START WAL LOCATION line")
    return wal.group(1), {m.group(1): parse_label_time(m.group(2)) for m in _LABEL_TIME.finditer(text)}


# A base backup known from its WAL bucket (drtopo.backup.wal): only its label is local until its tars are fetched,
# kept under this name (a plain `backup_label` would make the folder look like an unpacked backup).
REMOTE_LABEL = "backup_label.bucket"


def read_label(folder: Path) -> str | None:
    """The backup label of the base backup in `folder`: plain, inside base.tar, or fetched from the WAL bucket."""
    if (folder / "backup_label").is_file():
        return (folder / "backup_label").read_text()
    for name in ("base.tar", "base.tar.gz"):
        if (folder / name).is_file():
            with tarfile.open(folder / name, "r:*") as tar:
                # pg_basebackup writes backup_label first: stop there rather than index a large archive.
                for member in tar:
                    if member.name == "backup_label":
                        label = tar.extractfile(member)
                        return label.read().decode() if label else None
    if (folder / REMOTE_LABEL).is_file():
        return (folder / REMOTE_LABEL).read_text()
    return None


def find_base_backups(base_backup_dir: Path, archive_dir: Path) -> list[BaseBackup]:
    """Base backups in the folder itself or its subfolders (tar or plain), oldest first."""
    found = []
    for folder in [base_backup_dir, *sorted(p for p in base_backup_dir.glob("*") if p.is_dir())]:
        label = read_label(folder)
        if label is None:
            continue
        wal, times = parse_backup_label(label)
        stop = None
        for history in archive_dir.glob(f"{wal}.*.backup"):
            _, history_times = parse_backup_label(history.read_text())
            stop = history_times.get("STOP")
        found.append(BaseBackup(folder, wal, times["START"], stop))
    return sorted(found, key=lambda b: b.start_time)


def choose_base_backup(backups: list[BaseBackup], target: datetime) -> BaseBackup:
    """The newest base backup consistent before T; T before the oldest one is BadInput."""
    if not backups:
        raise BadInput("no base backup found; expected a base backup (pg_basebackup) in selfManaged.baseBackupDir")
    usable = [b for b in backups if b.consistent_at <= target]
    if not usable:
        oldest = min(b.consistent_at for b in backups)
        raise BadInput(
            f"--time {target.isoformat()} is before the oldest base backup; "
            f"earliest restorable time is {oldest.isoformat(timespec='seconds')}"
        )
    return max(usable, key=lambda b: b.consistent_at)
