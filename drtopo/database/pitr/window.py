"""The restorable window of a point-in-time restore and the time T asked for: parsing T, checking it against
the window, and the window itself (self-managed: base backups to the newest commit WAL reaches; RDS: its automated
backups' retention to `LatestRestorableTime`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from drtopo.database.pitr.labels import BaseBackup
from drtopo.report import BadInput, Report, Unsafe


def parse_target_time(text: str, now: datetime, flag: str = "--time") -> datetime:
    """T from ISO 8601 with a zone (`Z` or an offset), no later than `now`; anything else is BadInput naming `flag`."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{flag} {text!r} is not an ISO 8601 time; expected e.g. 2026-11-27T14:05:00Z") from None
    if value.tzinfo is None:
        raise BadInput(f"{flag} {text!r} has no zone; expected an offset or Z, e.g. 2026-11-27T14:05:00+00:00")
    if value > now:
        raise BadInput(f"{flag} {text!r} is in the future (now is {now.isoformat(timespec='seconds')})")
    return value.astimezone(UTC)


def check_window(target: datetime, earliest: datetime, latest: datetime, what: str) -> None:
    """Refuse (BadInput) a target outside [earliest, latest], naming the window."""
    if not earliest <= target <= latest:
        raise BadInput(
            f"--time {target.isoformat()} is outside {what} restorable window "
            f"{earliest.isoformat(timespec='seconds')} .. {latest.isoformat(timespec='seconds')}"
        )


@dataclass(frozen=True)
class Window:
    """What a point-in-time restore can reach: [earliest, latest] and where `latest` comes from."""

    earliest: datetime
    latest: datetime
    latest_basis: str
    backups: tuple[BaseBackup, ...] = ()

    def describe(self) -> str:
        return f"{self.earliest.isoformat(timespec='seconds')} .. {self.latest.isoformat(timespec='seconds')}"


def self_managed_window(backups: list[BaseBackup], latest: datetime | None, basis: str) -> Window:
    """[the oldest base backup's consistent point, the newest point WAL reaches]; BadInput when nothing is restorable.

    Recovery to T stops at the first commit after T, so `latest` is the newest commit the archive holds (or now, when
    the source is a primary that `flush_archive` can make commit once more and archive).
    """
    if not backups:
        raise BadInput("no base backup found; expected a base backup (pg_basebackup) in selfManaged.baseBackupDir")
    earliest = min(b.consistent_at for b in backups)
    if latest is None or latest < earliest:
        raise BadInput(
            f"the WAL archive holds no commit after the oldest base backup ({earliest.isoformat(timespec='seconds')}); "
            "nothing can be restored to a point in time"
        )
    return Window(earliest, latest, basis, tuple(backups))


def rds_window(instance: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """[earliest, latest] restorable: from max(created, latest - retention) to LatestRestorableTime."""
    retention = int(instance.get("BackupRetentionPeriod") or 0)
    if retention == 0:
        raise Unsafe(f"instance {instance['DBInstanceIdentifier']} has automated backups off; no point-in-time restore")
    latest = instance.get("LatestRestorableTime") or now
    earliest = max(instance.get("InstanceCreateTime") or latest, latest - timedelta(days=retention))
    return earliest.astimezone(UTC), latest.astimezone(UTC)


def window_rds(instance: dict[str, Any], now: datetime) -> Window:
    earliest, latest = rds_window(instance, now)
    basis = (
        f"LatestRestorableTime of {instance['DBInstanceIdentifier']}, "
        f"retention {instance.get('BackupRetentionPeriod')} days"
    )
    return Window(earliest, latest, basis)


@dataclass(frozen=True)
class Shown:
    """A restorable window as a command shows it: its lines, and what a restore to a time T in it would use."""

    window: Window
    what: str  # whose window, in a refusal: "instance X's", "the self-managed"
    lines: tuple[str, ...]
    uses: Callable[[datetime], str]

    def at(self, target: datetime, report: Report) -> str:
        """BadInput for a `target` outside the window, else the line saying what a restore to it would use."""
        check_window(target, self.window.earliest, self.window.latest, self.what)
        uses = self.uses(target)
        report.check("target in window", True, f"{target.isoformat()} uses {uses}")
        return f"restore to {target.isoformat()} uses {uses}"


def show(
    window: Window,
    what: str,
    report: Report,
    where: Callable[[BaseBackup], str],
    uses: Callable[[datetime], str],
    chain: Callable[[], None] | None = None,
) -> Shown:
    """Record `window` in `report` (then `chain`, a check of the WAL it needs) and the lines that show it; `where`
    names a base backup as shown."""
    lines = (
        f"earliest restorable  {window.earliest.isoformat()}",
        f"latest restorable    {window.latest.isoformat()}  ({window.latest_basis})",
        *(f"base backup          {where(b)}  consistent at {b.consistent_at.isoformat()}" for b in window.backups),
    )
    report.measured.update(
        earliest=window.earliest.isoformat(),
        latest=window.latest.isoformat(),
        latest_basis=window.latest_basis,
        base_backups=[{"path": where(b), "consistent_at": b.consistent_at.isoformat()} for b in window.backups],
    )
    report.check("restorable window", True, window.describe())
    if chain is not None:
        chain()
    return Shown(window, what, lines, uses)
