"""The pure parts of corruption recovery: the re-apply plan from a comparison, the order of tables by foreign keys,
transaction ids as xmin shows them, and the settings a restored instance takes over at the cutover."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from drtopo.database.compare import KeyDiff, TableDiff
from drtopo.database.pitr.cutover import TAKEN_OVER, kept_identifier, takeover_settings
from drtopo.database.pitr.recovery import recovery_settings, staging_dir
from drtopo.database.reapply import foreign_key_order, plan_from_diffs, xid32
from drtopo.report import BadInput


def _diff(table: str, missing: list[int], extra: list[int], changed: list[int], truncated: bool = False) -> TableDiff:
    return TableDiff(table, "id", 10, 9, KeyDiff(missing, extra, changed), 1, truncated, 0.1, "hash_record")


def test_plan_copies_rows_inserted_or_changed_after_t_and_keeps_rows_deleted_after_t() -> None:
    (plan,) = plan_from_diffs([_diff("interface_exceptions", missing=[9, 7], extra=[3], changed=[4])])
    assert plan.to_copy == [4, 7, 9]
    assert plan.deleted == [3]
    with pytest.raises(ValueError, match="truncated"):
        plan_from_diffs([_diff("t", [1], [], [], truncated=True)])
    composite = TableDiff("t", "a, b", 1, 1, KeyDiff(), 0, False, 0.0, "hash_record")
    with pytest.raises(ValueError, match="composite key"):
        plan_from_diffs([composite])


def test_parents_come_before_the_tables_referencing_them() -> None:
    refs = [("retry_attempts", "interface_exceptions"), ("b", "a"), ("a", "a")]
    assert foreign_key_order(["retry_attempts", "interface_exceptions", "b", "a"], refs) == [
        "a",
        "interface_exceptions",
        "b",
        "retry_attempts",
    ]
    assert foreign_key_order(["x"], [("x", "elsewhere")]) == ["x"]
    with pytest.raises(ValueError, match="cycle"):
        foreign_key_order(["a", "b"], [("a", "b"), ("b", "a")])


def test_transaction_ids_compare_as_xmin_shows_them() -> None:
    assert xid32(812) == 812
    assert xid32(3 * 2**32 + 812) == 812  # pg_current_xact_id() carries the epoch
    with pytest.raises(ValueError, match="negative"):
        xid32(-1)


def test_cutover_instance_archives_into_its_staging_folder_until_it_takes_over() -> None:
    target = datetime(2026, 11, 27, 14, 5, tzinfo=UTC)
    staged = staging_dir(Path("/lab/pg/pitr-x"))
    assert staged == Path("/lab/pg/pitr-x.wal")
    lines = dict(
        line.split(" = ", 1) for line in recovery_settings(Path("/a"), target, 1, staged).splitlines() if " = " in line
    )
    assert lines["archive_mode"] == "on"
    assert lines["archive_command"] == '\'test ! -f "/lab/pg/pitr-x.wal/%f" && cp "%p" "/lab/pg/pitr-x.wal/%f"\''
    with pytest.raises(BadInput, match="quote"):
        recovery_settings(Path("/a"), target, 1, Path("/it's"))


def test_takeover_gives_the_restored_instance_the_source_identity() -> None:
    source = {
        "port": "5432",
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "cluster_name": "prod",
        "archive_mode": "on",
        "archive_command": "test ! -f '/x/%f' && cp %p /x/%f",
    }
    lines = takeover_settings(source).splitlines()
    assert [line.split(" = ")[0] for line in lines[1:]] == list(TAKEN_OVER)
    assert "port = '5432'" in lines
    assert "archive_command = 'test ! -f ''/x/%f'' && cp %p /x/%f'" in lines
    with pytest.raises(ValueError, match="lack"):
        takeover_settings({"port": "1"})


def test_the_damaged_rds_instance_is_kept_under_a_name_rds_accepts() -> None:
    at = datetime(2026, 11, 27, 14, 5, 9, tzinfo=UTC)
    assert (
        kept_identifier("exception-collector-us-east-1", at) == "exception-collector-us-east-1-damaged-20261127140509"
    )
    with pytest.raises(BadInput, match="at most 63"):
        kept_identifier("x" * 41, at)  # 41 + len("-damaged-") + 14 = 64
