"""drtopo.database.compare on the lab's PostgreSQL: 1M equal rows, then one changed, one missing, one extra row found.

The data is built once per module in two scratch databases on the lab's primary: the lab schema, made UNLOGGED so
the million rows neither stream to the standby nor fill the WAL archive, filled by generate_series, then copied
whole with CREATE DATABASE ... TEMPLATE.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from drtopo.database.compare import CompareError, compare
from lab.core import Lab

pytestmark = pytest.mark.lab

SCHEMA = Path(__file__).resolve().parents[2] / "lab" / "schema.sql"
TABLES = ("interface_exceptions", "retry_attempts")
ROWS = 1_000_000
REF, TGT = "cmp_reference", "cmp_target"
FILL = f"""
ALTER TABLE retry_attempts SET UNLOGGED;
ALTER TABLE interface_exceptions SET UNLOGGED;
INSERT INTO interface_exceptions (id, transaction_id, interface_type, exception_reason, operation, status,
    severity, retryable, customer_id, retry_count, created_at, updated_at)
SELECT i, 'txn-' || i, (ARRAY['ORDER', 'COLLECTION', 'DISTRIBUTION'])[1 + i % 3], 'reason ' || i % 97, 'CREATE',
       (ARRAY['NEW', 'ACKNOWLEDGED', 'RESOLVED', 'CLOSED'])[1 + i % 4], 'MEDIUM', i % 2 = 0, 'cust-' || i % 1000,
       i % 5, timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
FROM generate_series(1, {ROWS}) i;
INSERT INTO retry_attempts (id, exception_id, attempt_number, status, initiated_at)
SELECT i, i, 1, 'FAILED', timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
FROM generate_series(1, {ROWS}, 10) i;
"""


def _admin(lab: Lab) -> psycopg.Connection:
    return psycopg.connect(lab.prod.postgres.conninfo("postgres"), autocommit=True)


def _drop(conn: psycopg.Connection) -> None:
    for name in (REF, TGT):
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def pair(lab: Lab) -> Iterator[tuple[str, str]]:
    with _admin(lab) as admin:
        _drop(admin)
        admin.execute(f"CREATE DATABASE {REF}")
        with psycopg.connect(lab.prod.postgres.conninfo(REF), autocommit=True) as ref:
            ref.execute(SCHEMA.read_text())
            ref.execute(FILL)
            ref.execute("VACUUM ANALYZE")
        admin.execute(f"CREATE DATABASE {TGT} TEMPLATE {REF} STRATEGY FILE_COPY")
    try:
        yield lab.prod.postgres.conninfo(REF), lab.prod.postgres.conninfo(TGT)
    finally:
        with _admin(lab) as admin:
            _drop(admin)


def _compare(pair: tuple[str, str], tables: tuple[str, ...] = TABLES, limit: int = 20) -> dict:
    with psycopg.connect(pair[0], autocommit=True) as ref, psycopg.connect(pair[1], autocommit=True) as tgt:
        return {d.table: d for d in compare(ref, tgt, tables, limit=limit)}


def _restore(pair: tuple[str, str], keys: dict[str, list[int]]) -> None:
    """Make the target's rows at `keys` what the reference holds again."""
    with psycopg.connect(pair[0], autocommit=True) as ref, psycopg.connect(pair[1], autocommit=True) as tgt:
        for table in ("retry_attempts", "interface_exceptions"):
            tgt.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (keys.get(table, []),))
        for table in ("interface_exceptions", "retry_attempts"):
            for row in ref.execute(f"SELECT * FROM {table} WHERE id = ANY(%s)", (keys.get(table, []),)):
                tgt.execute(f"INSERT INTO {table} VALUES ({', '.join(['%s'] * len(row))})", row)


def test_equal_tables_compare_equal(pair: tuple[str, str]) -> None:
    diffs = _compare(pair)
    assert diffs["interface_exceptions"].equal and diffs["interface_exceptions"].reference_rows == ROWS
    assert diffs["retry_attempts"].equal and diffs["retry_attempts"].target_rows == ROWS // 10
    assert diffs["interface_exceptions"].strategy == "hash_record"


def test_one_changed_one_missing_one_extra_row_among_a_million(pair: tuple[str, str]) -> None:
    changes = [
        "UPDATE interface_exceptions SET status = 'ESCALATED' WHERE id = 654321",
        "DELETE FROM interface_exceptions WHERE id = 123457",
        "INSERT INTO interface_exceptions (id, transaction_id, interface_type, exception_reason, operation) "
        "VALUES (1000001, 'txn-extra', 'ORDER', 'late', 'CREATE')",
        "UPDATE retry_attempts SET completed_at = initiated_at WHERE id = 500001",
    ]
    with psycopg.connect(pair[1], autocommit=True) as tgt:
        for statement in changes:
            tgt.execute(statement)
    try:
        diffs = _compare(pair)
        ie = diffs["interface_exceptions"]
        assert (ie.keys.missing, ie.keys.extra, ie.keys.changed) == ([123457], [1000001], [654321])
        assert (ie.reference_rows, ie.target_rows) == (ROWS, ROWS)
        assert not ie.equal and not ie.truncated
        ra = diffs["retry_attempts"]
        assert (ra.keys.missing, ra.keys.extra, ra.keys.changed) == ([], [], [500001])
        limited = _compare(pair, ("interface_exceptions",), limit=2)["interface_exceptions"]
        assert len(limited.keys) == 2 and limited.truncated
    finally:
        _restore(pair, {"interface_exceptions": [123457, 654321, 1000001], "retry_attempts": [500001]})


def test_row_text_fallback_for_types_without_hash_pins_session_settings(lab: Lab, pair: tuple[str, str]) -> None:
    """A json column has no hash function: rows are hashed as text, identical only with the same settings."""
    ddl = "CREATE TABLE IF NOT EXISTS cmp_doc (id int PRIMARY KEY, body json, at timestamptz, n float8)"
    with (
        psycopg.connect(lab.prod.postgres.conninfo(REF), autocommit=True) as ref,
        psycopg.connect(lab.prod.postgres.conninfo(TGT), autocommit=True) as tgt,
    ):
        for conn, tz in ((ref, "Asia/Tokyo"), (tgt, "America/Denver")):
            conn.execute(ddl)
            conn.execute(f"ALTER DATABASE {conn.info.dbname} SET TimeZone = '{tz}'")
            conn.execute("TRUNCATE cmp_doc")
            conn.execute(
                "INSERT INTO cmp_doc SELECT i, json_build_object('i', i), timestamptz '2026-01-01Z' + i * "
                "interval '1 minute', i / 3.0 FROM generate_series(1, 5000) i"
            )
        tgt.execute("UPDATE cmp_doc SET body = '{\"i\": -1}' WHERE id = 77")
    try:
        diff = _compare((lab.prod.postgres.conninfo(REF), lab.prod.postgres.conninfo(TGT)), ("cmp_doc",))["cmp_doc"]
        assert diff.strategy == "row-text"
        assert (diff.keys.missing, diff.keys.extra, diff.keys.changed) == ([], [], [77])
    finally:
        for db in (REF, TGT):
            with psycopg.connect(lab.prod.postgres.conninfo(db), autocommit=True) as conn:
                conn.execute("DROP TABLE cmp_doc")
                conn.execute(f"ALTER DATABASE {db} RESET TimeZone")


def test_a_composite_key_is_bucketed_by_hash_and_a_table_without_key_refused(pair: tuple[str, str]) -> None:
    for conninfo in pair:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE cmp_pair (region text, n int, v text, PRIMARY KEY (region, n))")
            conn.execute(
                "INSERT INTO cmp_pair SELECT (ARRAY['eu', 'us', 'ap'])[1 + i % 3], i, md5(i::text) "
                "FROM generate_series(1, 20000) i"
            )
            conn.execute("CREATE TABLE cmp_heap (v text)")
    with psycopg.connect(pair[1], autocommit=True) as tgt:
        tgt.execute("UPDATE cmp_pair SET v = 'changed' WHERE n = 4242")
        tgt.execute("DELETE FROM cmp_pair WHERE n = 7777")
        tgt.execute("INSERT INTO cmp_pair VALUES ('sa', 1, 'new')")
    try:
        with psycopg.connect(pair[0], autocommit=True) as ref, psycopg.connect(pair[1], autocommit=True) as tgt:
            (diff,) = compare(ref, tgt, ["cmp_pair"], leaf_rows=50)  # small leaves: at least two hash levels
        assert diff.key == "region, n"
        assert (diff.keys.missing, diff.keys.extra, diff.keys.changed) == ([("us", 7777)], [("sa", 1)], [("eu", 4242)])
        with pytest.raises(CompareError, match="'cmp_heap' has no primary key"):
            _compare(pair, ("cmp_heap",))
        with pytest.raises(CompareError, match="'nope' does not exist"):
            _compare(pair, ("nope",))
    finally:
        for conninfo in pair:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute("DROP TABLE cmp_pair, cmp_heap")
