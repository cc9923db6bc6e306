"""What a cutover that swapped in reports: the write-unavailability window from the wall times its fence and writable
steps journal, the sequences its passes moved, and the terminal's lines (counts per table, the window, sequences,
where it serves)."""

from __future__ import annotations

from datetime import UTC, datetime

from drtopo.database.pitr.cutover import report_lines, sequences_moved, write_unavailable

T0 = datetime(2026, 12, 2, 3, 24, tzinfo=UTC).timestamp()
FENCED_FROM, WRITABLE_AT = T0 + 5.0, T0 + 7.25


def test_writes_are_refused_from_the_fence_until_the_restored_instance_is_writable() -> None:
    window = write_unavailable(FENCED_FROM, WRITABLE_AT)
    assert window == {
        "from": "2026-12-02T03:24:05+00:00",
        "to": "2026-12-02T03:24:07.250000+00:00",
        "seconds": 2.25,
    }
    assert write_unavailable(FENCED_FROM, None) is None, "not writable again: no window to report"
    assert write_unavailable(None, WRITABLE_AT) is None


def test_sequences_moved_by_any_pass() -> None:
    passes = [{"sequences": {"public.a_id_seq": 40}}, {"sequences": {"public.a_id_seq": 44, "public.b_id_seq": 3}}]
    assert sequences_moved(passes) == {"public.a_id_seq": 44, "public.b_id_seq": 3}
    assert sequences_moved([{"sequences": {}}, {}]) == {}


def test_report_lines_name_counts_window_sequences_and_where_it_serves() -> None:
    measured = {
        "rows_reapplied_per_table": {"interface_exceptions": 21, "retry_attempts": 0},
        "rows_excluded_as_damage": {"interface_exceptions": 100, "retry_attempts": 0},
        "rows_deleted_after_t_kept": {"interface_exceptions": 100, "retry_attempts": 0},
        "write_unavailable": write_unavailable(FENCED_FROM, WRITABLE_AT),
        "sequences_moved": {},
        "conninfo": "host=127.0.0.1 port=5432",
        "data_dir": "/lab/pg/prod",
        "log": "/lab/pg/prod/pitr.log",
    }
    lines = report_lines(measured)
    assert lines[0] == "re-applied 21 rows written after T (interface_exceptions 21)"
    assert lines[1] == "written by the damage and left out (as at T): 100 rows (interface_exceptions 100)"
    assert lines[2].startswith("deleted after T and kept as at T (back in the table): 100 rows (interface_exceptions")
    assert "a legitimate delete between T and the fence is among them" in lines[2]
    assert lines[3] == (
        "writes refused for 2.2 s: fenced 2026-12-02T03:24:05+00:00, writable again 2026-12-02T03:24:07.250000+00:00"
    )
    assert lines[4].startswith("sequences: none needed moving")
    assert lines[5] == "serving: host=127.0.0.1 port=5432 (data /lab/pg/prod, log /lab/pg/prod/pitr.log)"
    moved = report_lines({**measured, "sequences_moved": {"public.interface_exceptions_id_seq": 321}})
    assert "sequences moved past the re-applied ids: public.interface_exceptions_id_seq -> 321" in moved
