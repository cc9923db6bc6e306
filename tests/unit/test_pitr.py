"""Point-in-time recovery's pure parts: the target time, restorable windows, base backup choice, recovery settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drtopo.database.pitr.labels import BaseBackup, choose_base_backup, parse_backup_label
from drtopo.database.pitr.recovery import recovery_outcome, recovery_settings
from drtopo.database.pitr.wal_names import chain_gaps, newest_commit_in, parse_history, segment_name, segment_of
from drtopo.database.pitr.window import check_window, parse_target_time, rds_window, self_managed_window
from drtopo.report import BadInput, Unsafe

NOW = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)

LABEL = """START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-11-27 15:52:27 UTC
LABEL: pg_basebackup base backup
START TIMELINE: 1
"""
HISTORY = LABEL.replace("START TIMELINE: 1\n", "START TIMELINE: 1\nSTOP TIME: 2026-11-27 15:52:28 UTC\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-27T14:05:00Z", datetime(2026, 11, 27, 14, 5, tzinfo=UTC)),
        ("2026-11-27T15:05:00.250+01:00", datetime(2026, 11, 27, 14, 5, 0, 250000, tzinfo=UTC)),
        (" 2026-11-27 14:05:00+00:00 ", datetime(2026, 11, 27, 14, 5, tzinfo=UTC)),
    ],
)
def test_target_time_is_normalised_to_utc(text: str, expected: datetime) -> None:
    assert parse_target_time(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday", "not an ISO 8601 time"),
        ("2026-11-27T14:05:00", "has no zone"),
        ("2026-11-27T16:00:01Z", "in the future"),
        ("2026-13-01T00:00:00Z", "not an ISO 8601 time"),
    ],
)
def test_bad_target_times_are_bad_input_naming_the_value(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as err:
        parse_target_time(text, NOW)
    assert text in str(err.value) and "\n" not in str(err.value)


def test_window_refusal_names_the_window() -> None:
    earliest, latest = NOW - timedelta(days=7), NOW - timedelta(minutes=5)
    check_window(NOW - timedelta(days=1), earliest, latest, "instance db's")
    for outside in (earliest - timedelta(seconds=1), latest + timedelta(seconds=1)):
        with pytest.raises(BadInput, match=r"outside instance db's restorable window 2026-11-20T16:00:00\+00:00 \.\."):
            check_window(outside, earliest, latest, "instance db's")


def test_backup_label_and_history_file() -> None:
    wal, times = parse_backup_label(LABEL)
    assert wal == "000000010000000000000002"
    assert times == {"START": datetime(2026, 11, 27, 15, 52, 27, tzinfo=UTC)}
    assert parse_backup_label(HISTORY)[1]["STOP"] == datetime(2026, 11, 27, 15, 52, 28, tzinfo=UTC)


def _backup(name: str, start: datetime, stop: datetime | None) -> BaseBackup:
    return BaseBackup(Path(name), "000000010000000000000002", start, stop)


def test_newest_base_backup_consistent_before_t_is_chosen() -> None:
    monday, tuesday = NOW - timedelta(days=2), NOW - timedelta(days=1)
    backups = [_backup("mon", monday, monday + timedelta(minutes=3)), _backup("tue", tuesday, None)]
    assert choose_base_backup(backups, tuesday + timedelta(hours=1)).path == Path("tue")
    assert choose_base_backup(backups, tuesday - timedelta(hours=1)).path == Path("mon")
    # During Monday's backup (started, not yet consistent) nothing can be restored.
    with pytest.raises(BadInput, match="before the oldest base backup; earliest restorable time is 2026-11-25T16:03"):
        choose_base_backup(backups, monday + timedelta(minutes=1))
    with pytest.raises(BadInput, match="no base backup found"):
        choose_base_backup([], NOW)


def test_recovery_settings_promote_and_never_archive_or_follow() -> None:
    conf = recovery_settings(Path("/lab/pg/archive"), datetime(2026, 11, 27, 14, 5, tzinfo=UTC), 6543)
    lines = dict(line.split(" = ", 1) for line in conf.splitlines() if " = " in line)
    assert lines["restore_command"] == '\'cp "/lab/pg/archive/%f" "%p"\''
    assert lines["recovery_target_time"] == "'2026-11-27T14:05:00+00:00'"
    assert lines["recovery_target_action"] == "'promote'"
    assert lines["archive_mode"] == "off"
    assert lines["primary_conninfo"] == "''"
    assert lines["port"] == "6543"
    with pytest.raises(BadInput, match="quote"):
        recovery_settings(Path("/it's"), NOW, 1)


def test_rds_window_is_bounded_by_retention_and_creation() -> None:
    old = {
        "DBInstanceIdentifier": "db",
        "BackupRetentionPeriod": 7,
        "LatestRestorableTime": NOW,
        "InstanceCreateTime": NOW - timedelta(days=100),
    }
    assert rds_window(old, NOW) == (NOW - timedelta(days=7), NOW)
    young = {**old, "InstanceCreateTime": NOW - timedelta(hours=2)}
    assert rds_window(young, NOW) == (NOW - timedelta(hours=2), NOW)
    with pytest.raises(Unsafe, match="automated backups off"):
        rds_window({**old, "BackupRetentionPeriod": 0}, NOW)


def test_recovery_outcome_from_the_server_log() -> None:
    log = (
        "LOG:  recovery stopping before commit of transaction 747, time 2026-11-27 15:55:47.752765+00\n"
        "LOG:  last completed transaction was at log time 2026-11-27 15:55:45.205849+00\n"
    )
    assert recovery_outcome(log) == {
        "stopped_before": "2026-11-27 15:55:47.752765+00",
        "last_transaction": "2026-11-27 15:55:45.205849+00",
        "fatal": None,
    }
    failed = recovery_outcome("FATAL:  recovery ended before configured recovery target was reached\n")
    assert failed["stopped_before"] is None and "recovery target" in failed["fatal"]


WALDUMP = (
    "rmgr: Transaction len (rec/tot):     34/    34, tx:        745, lsn: 0/00C60EF0, prev 0/00C60EA0, "
    "desc: COMMIT 2026-11-27 15:58:01.250000 UTC\n"
    "rmgr: Transaction len (rec/tot):     34/    34, tx:        746, lsn: 0/00C61000, prev 0/00C60EF0, "
    "desc: ABORT 2026-11-27 15:59:00 UTC\n"
    "rmgr: Transaction len (rec/tot):     66/    66, tx:          0, lsn: 0/00C62000, prev 0/00C61000, "
    "desc: RUNNING_XACTS nextXid 747\n"
)


def test_newest_commit_or_abort_bounds_the_archive() -> None:
    assert newest_commit_in(WALDUMP) == datetime(2026, 11, 27, 15, 59, tzinfo=UTC)
    assert newest_commit_in(WALDUMP.splitlines()[0]) == datetime(2026, 11, 27, 15, 58, 1, 250000, tzinfo=UTC)
    assert newest_commit_in("rmgr: Standby desc: RUNNING_XACTS") is None


def test_self_managed_window_runs_from_the_oldest_consistent_backup_to_the_newest_commit() -> None:
    monday, tuesday = NOW - timedelta(days=2), NOW - timedelta(days=1)
    backups = [_backup("mon", monday, monday + timedelta(minutes=3)), _backup("tue", tuesday, None)]
    window = self_managed_window(backups, NOW, "now")
    assert (window.earliest, window.latest) == (monday + timedelta(minutes=3), NOW)
    assert window.describe() == "2026-11-25T16:03:00+00:00 .. 2026-11-27T16:00:00+00:00"
    # The base backup a T uses is the newest consistent before it; a T outside the window names the window.
    assert choose_base_backup(list(window.backups), tuesday + timedelta(minutes=1)).path == Path("tue")
    with pytest.raises(BadInput, match=r"outside the self-managed restorable window 2026-11-25T16:03:00\+00:00 \.\."):
        check_window(monday, window.earliest, window.latest, "the self-managed")
    with pytest.raises(BadInput, match="no base backup found"):
        self_managed_window([], NOW, "now")
    with pytest.raises(BadInput, match="holds no commit after the oldest base backup"):
        self_managed_window(backups, None, "archive")
    with pytest.raises(BadInput, match="holds no commit after the oldest base backup"):
        self_managed_window(backups, monday, "archive")


MB = 1024 * 1024


def test_wal_segment_names_and_numbers() -> None:
    assert segment_of("000000010000000000000012", MB) == (1, 0x12)
    assert segment_of("000000020000000100000003", MB) == (2, 4096 + 3)  # 4096 one-MB segments per log file
    assert segment_name(2, 4096 + 3, MB) == "000000020000000100000003"
    assert segment_of("000000010000000100000003", 16 * MB) == (1, 256 + 3)
    with pytest.raises(ValueError, match="not a WAL segment name"):
        segment_of("00000002.history", MB)


def test_the_chain_follows_the_newest_timeline_and_names_what_is_missing() -> None:
    names = [f"0000000100000000000000{n:02X}" for n in range(0x0E, 0x13)]
    assert chain_gaps(names, "00000001000000000000000E", MB, []) == []
    assert chain_gaps([n for n in names if not n.endswith("10")], "00000001000000000000000E", MB, []) == [
        "000000010000000000000010"
    ]
    # Timeline 2 forked inside segment 0x12 (at 0/1234567): from that segment on, timeline 2 holds the WAL.
    history = parse_history("1\t0/1234567\tbefore 2026-12-01 11:54:51.854827+00\n")
    assert history == [(1, 0x1234567)]
    forked = [*names[:-1], "000000010000000000000012.partial", "000000020000000000000012", "000000020000000000000013"]
    segments = [n for n in forked if not n.endswith(".partial")]
    assert chain_gaps(segments, "00000001000000000000000E", MB, history) == []
    assert chain_gaps(
        [n for n in segments if n != "000000020000000000000012"], "00000001000000000000000E", MB, history
    ) == ["000000020000000000000012"]
    assert chain_gaps([], "00000001000000000000000E", MB, []) == ["00000001000000000000000E"]
