"""What a point-in-time restore is asked to do: the validated flags of `restore pitr`, one request per run.

The checks that need no database live here (a combination of flags that means nothing); those that depend on the
platform (a flag of the other platform's restore) are the database's own (`Database.check_restore`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from drtopo.database.pitr.damage import DEFAULT_WIDTH
from drtopo.database.pitr.window import parse_target_time
from drtopo.report import BadInput

WAL_SOURCES = ("archive", "bucket")


class BadFlags(BadInput):
    """Flags that do not go together (the command shows it as a usage error)."""


@dataclass(frozen=True)
class PitrRequest:
    """A restore to `time` (None: only `window`, what can be restored), into a new instance or, with `cutover`, in
    the damaged one's place (without `time`: T just before the damage's commit). Self-managed: `target_dir`,
    `target_port`, `wal_source`; RDS: `target_instance`. `find_damage` only lists the transactions committed within
    `width` around `around` (only those writing `tables` when given) and restores nothing."""

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
    find_damage: bool = False
    around: datetime | None = None
    width: timedelta = DEFAULT_WIDTH
    tables: tuple[str, ...] = ()
    restart: bool = False  # with `cutover`: drop an interrupted cutover's journal instead of resuming it
    break_lock: bool = False  # with `cutover`: take the failover locks from a run that is gone for good

    def __post_init__(self) -> None:
        no_time_needed = self.window or self.find_damage
        _check_flags(self.time is not None, no_time_needed, self.wal_source, self.cutover, self.damage_xids)
        _check_restart(self.restart, self.cutover)
        _check_break_lock(self.break_lock, self.cutover)
        _check_find(self.find_damage, self.time is not None, self.around is not None, self.tables, self.cutover)

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
        find_damage: bool = False,
        around: str | None = None,
        width: timedelta = DEFAULT_WIDTH,
        tables: tuple[str, ...] = (),
        restart: bool = False,
        break_lock: bool = False,
    ) -> PitrRequest:
        """The request for `--time` as typed (no later than `now`); the combination of flags is checked first.
        `--around` defaults to `now` for `find_damage`."""
        _check_flags(time is not None, window or find_damage, wal_source, cutover, damage_xids)
        _check_find(find_damage, time is not None, around is not None, tables, cutover)
        _check_restart(restart, cutover)
        _check_break_lock(break_lock, cutover)
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
            find_damage,
            (parse_target_time(around, now, "--around") if around else now) if find_damage else None,
            width,
            tables,
            restart,
            break_lock,
        )

    @property
    def target(self) -> datetime:
        """T; a request without one is only for the window (or a cutover's T is still to be found)."""
        if self.time is None:
            raise BadFlags("pitr needs --time T (or --window to see what can be restored)")
        return self.time


def _check_flags(has_time: bool, window: bool, wal_source: str, cutover: bool, damage_xids: tuple[int, ...]) -> None:
    if wal_source not in WAL_SOURCES:
        raise BadFlags(f"--wal-source {wal_source!r} is not one of {', '.join(WAL_SOURCES)}")
    if not has_time and not window and not (cutover and damage_xids):
        raise BadFlags(
            "pitr needs --time T (or --window to see what can be restored, --find-damage to find the damaging "
            "transaction, --cutover --damage-xid X to restore to just before it)"
        )
    if damage_xids and not cutover:
        raise BadFlags("--damage-xid goes with --cutover")
    if cutover and wal_source != "archive":
        raise BadFlags(f"--wal-source {wal_source} is not for --cutover: the cutover replays the server's archive")


def _check_find(find_damage: bool, has_time: bool, has_around: bool, tables: tuple[str, ...], cutover: bool) -> None:
    if find_damage and (has_time or cutover):
        raise BadFlags("--find-damage only lists transactions; use --around T for its window, not --time/--cutover")
    if not find_damage and (has_around or tables):
        raise BadFlags("--around/--table go with --find-damage")


def _check_restart(restart: bool, cutover: bool) -> None:
    if restart and not cutover:
        raise BadFlags("--restart goes with --cutover (it drops an interrupted cutover's journal)")


def _check_break_lock(break_lock: bool, cutover: bool) -> None:
    if break_lock and not cutover:
        raise BadFlags("--break-lock goes with --cutover (the only pitr run that takes the failover lock)")
