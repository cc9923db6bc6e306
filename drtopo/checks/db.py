"""The runbook's database checks after a recovery: tables, row counts, unique transactions, record ages, statuses, RPO.

Measured RPO is the gap between the disaster time and the newest record committed before it that the recovered
database holds; it is checked against the region-failure objective. Each function adds checks to a `Report`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import psycopg
from psycopg import sql

from drtopo.report import BadInput, Report

# The service's main table: transactions, statuses and record times are the runbook's checks on it.
EXCEPTIONS_TABLE = "interface_exceptions"


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a UTC offset (`2026-11-27T10:00:00Z`); anything else is BadInput."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--since {text!r} is not a time; expected ISO 8601 such as 2026-11-27T10:00:00Z") from None
    if moment.tzinfo is None:
        raise BadInput(f"--since {text!r} has no UTC offset; expected ISO 8601 with one, such as 2026-11-27T10:00:00Z")
    return moment


def rpo_seconds(newest_before: datetime | None, disaster: datetime) -> float | None:
    """Seconds of records lost: disaster time minus the newest record at or before it (None: no such record)."""
    if newest_before is None:
        return None
    return max(0.0, (disaster - newest_before).total_seconds())


def _one(conn: psycopg.Connection, query: sql.Composable, params: Sequence[object] = ()) -> tuple:
    with conn.cursor() as cur:
        cur.execute(query, params)
        row = cur.fetchone()
    assert row is not None
    return row


def table_checks(report: Report, conn: psycopg.Connection, tables: Sequence[str]) -> list[str]:
    """`db.table.<name>`: each table exists, with its row count as the value; returns the tables present."""
    present = []
    for table in tables:
        (exists,) = _one(conn, sql.SQL("SELECT to_regclass({}) IS NOT NULL").format(sql.Literal(table)))
        if not exists:
            report.check(f"db.table.{table}", False, "table is missing")
            continue
        (rows,) = _one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        report.check(f"db.table.{table}", True, f"{rows} rows", value=rows)
        report.measured.setdefault("row_counts", {})[table] = rows
        present.append(table)
    return present


def exception_checks(report: Report, conn: psycopg.Connection) -> None:
    """Unique transactions, oldest and newest record, status breakdown of the exceptions table."""
    rows, distinct, oldest, newest = _one(
        conn,
        sql.SQL("SELECT count(*), count(DISTINCT transaction_id), min(created_at), max(created_at) FROM {}").format(
            sql.Identifier(EXCEPTIONS_TABLE)
        ),
    )
    report.check(
        "db.unique_transactions",
        distinct == rows,
        f"{rows - distinct} duplicated transaction ids" if distinct != rows else "every transaction id once",
        value=distinct,
        limit=rows,
    )
    report.check(
        "db.records",
        rows > 0,
        f"oldest {oldest}, newest {newest}" if rows else "no records: the recovered database is empty",
        value=rows,
        limit="> 0",
    )
    report.measured.update(oldest_created_at=oldest, newest_created_at=newest)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT status, count(*) FROM {} GROUP BY status ORDER BY status").format(
                sql.Identifier(EXCEPTIONS_TABLE)
            )
        )
        breakdown = dict(cur.fetchall())
    report.measured["status_breakdown"] = breakdown
    report.check(
        "db.status_breakdown", True, ", ".join(f"{s}={n}" for s, n in breakdown.items()) or "none", value=breakdown
    )


def rpo_check(report: Report, conn: psycopg.Connection, disaster: datetime, objective_seconds: float) -> None:
    """`db.rpo`: the newest record at or before the disaster time vs the region-failure RPO objective."""
    (newest,) = _one(
        conn,
        sql.SQL("SELECT max(created_at) FROM {} WHERE created_at <= %s").format(sql.Identifier(EXCEPTIONS_TABLE)),
        (disaster,),
    )
    rpo = rpo_seconds(newest, disaster)
    report.measured["rpo_seconds"] = rpo
    if rpo is None:
        report.check("db.rpo", False, f"no record at or before {disaster.isoformat()}", limit=objective_seconds)
        return
    report.check(
        "db.rpo",
        rpo <= objective_seconds,
        f"newest record at or before {disaster.isoformat()} is from {newest.isoformat()}: the age of the newest "
        "row at the disaster time (a bound on what a loss then could be), not data lost",
        value=round(rpo, 3),
        limit=objective_seconds,
    )


def accepts_writes(conn: psycopg.Connection) -> bool:
    """True when a new session on this server may write: not in recovery and not read-only by default."""
    in_recovery, read_only = _one(
        conn, sql.SQL("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')")
    )
    return not in_recovery and read_only == "off"


def split_brain_check(report: Report, writers: dict[str, bool | None]) -> None:
    """`db.split_brain`: at most one database of the pair accepts writes (None: that one did not answer)."""
    writable = sorted(name for name, w in writers.items() if w)
    silent = sorted(name for name, w in writers.items() if w is None)
    detail = f"writable: {', '.join(writable) or 'none'}" + (f"; not answering: {', '.join(silent)}" if silent else "")
    if len(writable) > 1:
        detail = f"split brain: {' and '.join(writable)} both accept writes"
    report.check("db.split_brain", len(writable) <= 1, detail, value=len(writable), limit=1)


# The runbook's performance validation query (exceptions of the last hour).
RUNBOOK_QUERY = "SELECT count(*) FROM interface_exceptions WHERE created_at > now() - interval '1 hour'"


def query_time_check(report: Report, conn: psycopg.Connection, limit_ms: float, runs: int = 3) -> None:
    """`db.query_time`: the runbook's query, the best of `runs` timings (the first may read cold pages), in ms."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        (count,) = _one(conn, sql.SQL(RUNBOOK_QUERY))
        timings.append((time.perf_counter() - start) * 1000)
    best = round(min(timings), 2)
    report.measured["db_query_ms"] = {"best": best, "worst": round(max(timings), 2), "rows": count}
    report.check("db.query_time", best <= limit_ms, f"{RUNBOOK_QUERY} -> {count}", value=best, limit=limit_ms)
