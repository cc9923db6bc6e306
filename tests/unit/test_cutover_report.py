"""What a cutover that swapped in reports: the write-unavailability window from the wall times its fence and writable
steps journal, the sequences its passes moved, and the terminal's lines (counts per table, the window, sequences,
the service's write probe, where it serves)."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import pytest

from drtopo.checks.recovery import remove_probe_row
from drtopo.checks.service import PROBE_PREFIX, probe_body, write_probe
from drtopo.database.pitr.cutover import report_lines, sequences_moved, write_unavailable
from drtopo.report import Report

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


PROBE = {
    "url": "http://10.0.0.2:8080/api/v1/exceptions",
    "transaction_id": "drtopo-write-probe-5f0c",
    "status": 201,
    "attempts": 2,
    "seconds": 0.412,
    "acknowledged": True,
    "id": 418,
    "removed": True,
}


@pytest.mark.parametrize(
    ("probe", "line"),
    [
        (
            PROBE,
            "the service writes again: POST http://10.0.0.2:8080/api/v1/exceptions -> 201 within 0.4 s (2 attempt(s)), "
            "probe row id 418 (drtopo-write-probe-5f0c) removed",
        ),
        (
            {**PROBE, "removed": False, "remove_error": "connection refused"},
            "the service writes again: POST http://10.0.0.2:8080/api/v1/exceptions -> 201 within 0.4 s (2 attempt(s)), "
            "probe row id 418 (drtopo-write-probe-5f0c) NOT removed (connection refused): delete it by its id",
        ),
        (
            {**PROBE, "status": 503, "acknowledged": False, "seconds": 30.0},
            "the service took NO write: POST http://10.0.0.2:8080/api/v1/exceptions -> 503 for 30.0 s; check the "
            "service and its database connection",
        ),
        (
            {**PROBE, "status": 0, "acknowledged": False, "seconds": 30.0},
            "the service took NO write: POST http://10.0.0.2:8080/api/v1/exceptions -> unreachable for 30.0 s; check "
            "the service and its database connection",
        ),
    ],
    ids=["removed", "left-behind", "refused", "unreachable"],
)
def test_the_write_probe_line_says_whether_the_service_writes_and_what_it_left(probe: dict, line: str) -> None:
    lines = report_lines({"write_probe": probe, "conninfo": "c", "data_dir": "d", "log": "l"})
    assert lines[-2] == line
    assert lines[-1].startswith("serving: c")
    assert not any("service" in text for text in report_lines({"conninfo": "c"})[:-1]), "no probe: no line"


def test_the_probe_row_says_it_is_drtopo_s_in_every_field_it_sets() -> None:
    body = probe_body(f"{PROBE_PREFIX}x")
    assert body["transactionId"] == "drtopo-write-probe-x"
    assert body["interfaceType"] == "DRTOPO" and "drtopo write probe" in body["exceptionReason"]


def test_a_service_that_never_answers_fails_the_probe_within_its_deadline() -> None:
    """Nothing listens on the port (loopback): the probe retries until its deadline, fails, and removes nothing."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]  # bound, not listening: connections are refused
        removed: list[int] = []
        report = Report()
        started = time.monotonic()
        probe = write_probe(report, f"http://127.0.0.1:{port}", lambda i, t: removed.append(i) or 1, timeout=0.6)
    assert time.monotonic() - started < 5
    assert probe["acknowledged"] is False and probe["status"] == 0 and probe["attempts"] >= 2
    assert removed == []
    check = report.checks[-1]
    assert check.name == "service.write_probe" and check.outcome == "fail"
    assert f"POST http://127.0.0.1:{port}/api/v1/exceptions -> unreachable" in check.detail


def test_only_a_probe_row_is_removed() -> None:
    with pytest.raises(ValueError, match="'order-17' is not a probe's"):
        remove_probe_row(None, 3, "order-17")  # type: ignore[arg-type]
