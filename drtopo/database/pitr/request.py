"""What a point-in-time restore is asked to do: the validated flags of `restore pitr`, one request per run.

The checks that need no database live here (a combination of flags that means nothing); those that depend on the
platform (a flag of the other platform's restore) are the database's own (`Database.check_restore`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from drtopo.database.pitr.window import parse_target_time
from drtopo.report import BadInput

WAL_SOURCES = ("archive", "bucket")


class BadFlags(BadInput):
    """Flags that do not go together (the command shows it as a usage error)."""


@dataclass(frozen=True)
class PitrRequest:
    """A restore to `time` (None: only `window`, what can be restored), into a new instance or, with `cutover`, in
    the damaged one's place. Self-managed: `target_dir`, `target_port`, `wal_source`; RDS: `target_instance`."""

    time: datetime | None = None
    window: bool = False
    rds: bool = False
    wal_source: str = "archive"
    target_dir: Path | None = None
    target_port: int | None = None
    target_instance: str | None = None
    cutover: bool = False
    damage_xids: tuple[int, ...] = ()
    dry_run: bool = False

    def __post_init__(self) -> None:
        _check_flags(self.time is not None, self.window, self.wal_source, self.cutover, self.damage_xids)

    @classmethod
    def parse(
        cls,
        time: str | None,
        now: datetime,
        *,
        window: bool = False,
        rds: bool = False,
        wal_source: str = "archive",
        target_dir: Path | None = None,
        target_port: int | None = None,
        target_instance: str | None = None,
        cutover: bool = False,
        damage_xids: tuple[int, ...] = (),
        dry_run: bool = False,
    ) -> PitrRequest:
        """The request for `--time` as typed (no later than `now`); the combination of flags is checked first."""
        _check_flags(time is not None, window, wal_source, cutover, damage_xids)
        return cls(
            parse_target_time(time, now) if time else None,
            window,
            rds,
            wal_source,
            target_dir,
            target_port,
            target_instance,
            cutover,
            damage_xids,
            dry_run,
        )

    @property
    def target(self) -> datetime:
        """T; a request without one is only for the window."""
        if self.time is None:
            raise BadFlags("pitr needs --time T (or --window to see what can be restored)")
        return self.time


def _check_flags(has_time: bool, window: bool, wal_source: str, cutover: bool, damage_xids: tuple[int, ...]) -> None:
    if wal_source not in WAL_SOURCES:
        raise BadFlags(f"--wal-source {wal_source!r} is not one of {', '.join(WAL_SOURCES)}")
    if not has_time and not window:
        raise BadFlags("pitr needs --time T (or --window to see what can be restored)")
    if damage_xids and not cutover:
        raise BadFlags("--damage-xid goes with --cutover")
    if cutover and wal_source != "archive":
        raise BadFlags(f"--wal-source {wal_source} is not for --cutover: the cutover replays the server's archive")
