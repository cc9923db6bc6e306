"""`restore pitr --find-damage` and T from `--damage-xid`: pg_waldump's text parsed into committed transactions.

The fixture is real pg_waldump 15 output of one segment, captured from a scratch PostgreSQL 15 with the service's two
tables (relfilenodes 16385 interface_exceptions, 16397 retry_attempts): xid 725 inserts 30 rows, 726 inserts 3
retry_attempts (locking 3 parents), 727 deletes the 14 RESOLVED rows with id > 3, 728 inserts one row and updates
another in a released savepoint (subxact 729), 730 updates a row and rolls back, 731 updates one row, 732 COPYs 5 rows
(one MULTI_INSERT); the segment was being written, so it ends in pg_waldump's "invalid record length" error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drtopo.database.pitr import damage
from drtopo.database.pitr.damage import Relation, Segment
from drtopo.database.pitr.request import BadFlags, PitrRequest
from drtopo.outputs import SelfManagedPostgres
from drtopo.report import BadInput, Report
from tests.unit.test_database_platform import RDS_ARN, outputs

WALDUMP = (Path(__file__).parent / "data" / "pg_waldump_15_damage.txt").read_text()
EXCEPTIONS, RETRIES = Relation(1663, 5, 16385), Relation(1663, 5, 16397)
NAMES = {EXCEPTIONS: "interface_exceptions", RETRIES: "retry_attempts"}
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def transactions() -> list[damage.Transaction]:
    found = damage.parse_waldump(WALDUMP)
    for t in found:
        t.names = NAMES
    return found


def test_committed_transactions_with_rows_per_relation_in_commit_order() -> None:
    found = {t.xid: t for t in damage.parse_waldump(WALDUMP)}
    assert list(found) == [725, 726, 727, 728, 731, 732], "730 rolled back; 729 is 728's subtransaction"
    counts = {xid: {str(r): rows.to_dict() for r, rows in t.rows.items()} for xid, t in found.items()}
    assert counts[725] == {"1663/5/16385": {"inserted": 30, "updated": 0, "deleted": 0}}
    assert counts[726] == {"1663/5/16397": {"inserted": 3, "updated": 0, "deleted": 0}}, "LOCK records are no rows"
    assert counts[727] == {"1663/5/16385": {"inserted": 0, "updated": 0, "deleted": 14}}
    assert counts[728] == {"1663/5/16385": {"inserted": 1, "updated": 1, "deleted": 0}}, "the savepoint's update"
    assert counts[732] == {"1663/5/16385": {"inserted": 5, "updated": 0, "deleted": 0}}, "MULTI_INSERT's tuples"
    assert found[727].committed_at == datetime(2026, 12, 2, 9, 47, 32, 386453, tzinfo=UTC)
    assert found[727].commit_lsn == "0/020111D8"


def test_window_lists_the_biggest_first_and_leaves_out_commits_outside_it() -> None:
    found = transactions()
    start = datetime(2026, 12, 2, 9, 47, 32, 300000, tzinfo=UTC)
    listed = damage.in_window(found, start, start + timedelta(seconds=1))
    assert [t.xid for t in listed] == [727, 728, 731], "725 and 726 before, 732 after the window"
    assert listed[0].to_dict()["tables"] == {"interface_exceptions": {"inserted": 0, "updated": 0, "deleted": 14}}
    assert damage.in_window([*found, *found], found[0].committed_at, found[-1].committed_at)[0].xid == 725, (
        "a transaction read twice (a timeline's first segment repeats its parent's) is listed once"
    )


@pytest.mark.parametrize(
    ("tables", "xids"),
    [(["retry_attempts"], [726]), (["public.retry_attempts"], [726]), (["nope"], []), (["interface_exceptions"], None)],
    ids=["name", "schema-qualified", "unknown", "busy-table"],
)
def test_table_narrows_to_the_transactions_writing_it(tables: list[str], xids: list[int] | None) -> None:
    found = transactions()
    narrowed = damage.only_tables(damage.in_window(found, found[0].committed_at, found[-1].committed_at), tables)
    expected = xids if xids is not None else [725, 727, 732, 728, 731]
    assert [t.xid for t in narrowed] == expected
    assert all(set(t.per_table()) <= {tables[0].removeprefix("public.")} for t in narrowed)


def test_unnamed_relations_show_their_file_and_the_table_lines() -> None:
    found = damage.parse_waldump(WALDUMP)
    listed = damage.in_window(found, found[0].committed_at, found[-1].committed_at)
    assert list(listed[0].per_table()) == ["rel 1663/5/16385"], "no live server: the relation's file numbers"
    for t in listed:
        t.names = NAMES
    lines = damage.table_lines(listed, limit=2)
    assert lines[1].split() == ["725", "2026-12-02", "09:47:31.989492", "interface_exceptions", "30", "0", "0"]
    assert lines[2].split() == ["727", "2026-12-02", "09:47:32.386453", "interface_exceptions", "0", "0", "14"]
    assert lines[-1] == "... 4 more transactions in the JSON report"
    assert damage.table_lines([]) == ["no transaction committed in the window"]


def test_only_the_service_database_is_kept() -> None:
    found = damage.parse_waldump(WALDUMP)
    other = damage.Transaction(999, NOW, "0/1", {Relation(1663, 1, 2619): damage.Rows(updated=33)})
    kept = damage.in_database([*found, other], 5)
    assert [t.xid for t in kept] == [725, 726, 727, 728, 731, 732], "template1's statistics are another database's"
    assert damage.in_database([other], 1)[0].total == 33
    rows = {EXCEPTIONS: damage.Rows(deleted=2), Relation(1663, 1, 2619): damage.Rows(1)}
    mixed = damage.Transaction(7, NOW, "0/2", rows)
    assert damage.in_database([mixed], 5)[0].rows == {EXCEPTIONS: damage.Rows(deleted=2)}


def test_t_from_an_xid_is_just_before_its_commit_and_before_the_earliest_of_several() -> None:
    found = transactions()
    delete = damage.commit_of(found, 727)
    assert delete is not None
    assert damage.time_before([delete]) == datetime(2026, 12, 2, 9, 47, 32, 386452, tzinfo=UTC)
    assert damage.time_before([damage.commit_of(found, x) for x in (731, 727)]) == damage.time_before([delete])
    previous = damage.commit_of(found, 726)
    assert previous is not None and previous.committed_at <= damage.time_before([delete]), "the commit before stays"
    assert damage.commit_of(found, 730) is None, "a rolled back transaction has no commit"
    assert damage.commit_of(found, 729) is None, "a subtransaction's id is not a commit of its own"
    with pytest.raises(ValueError):
        damage.time_before([])


def segment(name: str, minute: int) -> Segment:
    return Segment(name, datetime(2026, 12, 2, 10, minute, tzinfo=UTC), "archive", Path("/nowhere") / name)


def test_segments_in_wal_order_across_timelines_and_where_reading_starts() -> None:
    segments = [
        segment("000000020000000000000003", 9),
        segment("000000010000000000000002", 2),
        segment("000000010000000000000001", 1),
        segment("000000010000000000000003", 5),
        segment("000000020000000000000004", 12),
    ]
    ordered = damage.wal_order([*segments, Segment("000000010000000000000002", NOW, "bucket", None, Path)])
    assert [s.name for s in ordered] == [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000003",
        "000000020000000000000003",
        "000000020000000000000004",
    ]
    assert ordered[1].where == "archive", "the local copy is preferred"
    at = damage.first_to_read(ordered, datetime(2026, 12, 2, 10, 4, tzinfo=UTC))
    assert ordered[at].name == "000000010000000000000002", "one before the first archived after the start"
    assert damage.first_to_read(ordered, datetime(2026, 12, 2, 9, tzinfo=UTC)) == 0
    assert damage.first_to_read(ordered, NOW + timedelta(hours=1)) == len(ordered) - 1


def test_reading_stops_once_a_commit_is_past_the_window() -> None:
    segments = [segment(f"0000000100000000000000{i:02X}", i) for i in range(1, 6)]
    dumped: list[str] = []

    def dump(path: Path) -> str:
        dumped.append(path.name)
        return WALDUMP if len(dumped) == 2 else ""

    read = damage.read_from(segments, datetime(2026, 12, 2, 10, 3, tzinfo=UTC), lambda found: bool(found), dump)
    assert read.segments == ["000000010000000000000002", "000000010000000000000003"]
    assert [t.xid for t in read.transactions] == [725, 726, 727, 728, 731, 732]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"find_damage": True, "cutover": True, "damage_xids": (5,)}, "--find-damage only lists transactions"),
        ({"around": "2026-12-02T09:00:00Z", "window": True}, "--around/--table go with --find-damage"),
        ({"tables": ("t",), "window": True}, "--around/--table go with --find-damage"),
        ({"cutover": True}, "pitr needs --time T"),
    ],
    ids=["find-and-cutover", "around-alone", "table-alone", "cutover-without-xid-or-time"],
)
def test_flags_that_do_not_go_together(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BadFlags, match=message):
        PitrRequest.parse(None, NOW, **kwargs)  # type: ignore[arg-type]


def test_find_damage_defaults_to_now_and_a_cutover_by_xid_needs_no_time() -> None:
    request = PitrRequest.parse(None, NOW, find_damage=True, tables=("interface_exceptions",))
    assert request.around == NOW and request.width == damage.DEFAULT_WIDTH and request.time is None
    around = PitrRequest.parse(None, NOW, find_damage=True, around="2026-12-02T09:47:32Z").around
    assert around == datetime(2026, 12, 2, 9, 47, 32, tzinfo=UTC)
    with pytest.raises(BadInput, match="--around '2026-13-02' is not an ISO 8601 time"):
        PitrRequest.parse(None, NOW, find_damage=True, around="2026-13-02")
    assert PitrRequest.parse(None, NOW, cutover=True, damage_xids=(727,)).time is None


def test_rds_says_what_to_use_instead_and_an_empty_server_has_nothing_to_read(tmp_path: Path) -> None:
    on_rds = outputs(RDS_ARN, None)
    with pytest.raises(BadInput, match=r"RDS does not expose; on RDS: `restore pitr --rds --window`"):
        damage.find_damage(on_rds, Report(), NOW)
    with pytest.raises(BadInput, match="--damage-xid without --time reads the WAL, which RDS does not expose"):
        damage.target_before(on_rds, Report(), [727])
    nothing = SelfManagedPostgres(
        bin_dir="/nowhere", data_dir=str(tmp_path / "data"), archive_dir=str(tmp_path / "a"), base_backup_dir="/b"
    )
    with pytest.raises(BadInput, match="no WAL segment in"):
        damage.find_damage(outputs(RDS_ARN, nothing), Report(), NOW)
    with pytest.raises(BadInput, match="expected a positive number of seconds"):
        damage.find_damage(outputs(RDS_ARN, nothing), Report(), NOW, timedelta(0))
