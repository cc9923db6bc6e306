"""Re-apply to a database restored to T the writes a damaged database acknowledged after T, never the damage itself.

The comparison engine (`compare.py`) finds, per table and by primary key, what differs between the damaged database
(the reference: it holds every write acknowledged until now) and the restored one (the state at T):
- `missing` keys (in the damaged, not the restored) were inserted after T: copied over;
- `changed` keys were updated after T: their newest version is copied over (an upsert);
- `extra` keys (in the restored only) were deleted after T: kept, because the damage is the usual delete.
A row version written by a damaging transaction (its `xmin` is one of `damage_xids`) is never copied, so the damaging
statement is not replayed: the restored database keeps that row as it was at T. Rows move with binary COPY into a
temporary table and one `INSERT ... ON CONFLICT (key) DO UPDATE` per table, parents before children (foreign keys),
all in one transaction; sequences are moved forward to the damaged database's values, so new ids never collide.

Limits, stated: a delete after T is not replayed (it cannot be told apart from the damage by the rows alone), and a
row inserted after T that the damage itself deleted is gone from both sides.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from drtopo.database.compare import TableDiff, compare

ALL_KEYS = 10**9  # the comparison's key limit: a re-apply needs every differing key, not a sample


@dataclass
class TablePlan:
    """What one table needs: keys to copy (inserted or changed after T) and keys deleted after T (kept)."""

    table: str
    key: str
    inserted: list[Any] = field(default_factory=list)
    changed: list[Any] = field(default_factory=list)
    deleted: list[Any] = field(default_factory=list)

    @property
    def to_copy(self) -> list[Any]:
        return sorted(self.inserted + self.changed)


def plan_from_diffs(diffs: Sequence[TableDiff]) -> list[TablePlan]:
    """The per-table plan from a comparison with the damaged database as the reference (pure)."""
    plans = []
    for d in diffs:
        if d.truncated:
            raise ValueError(f"comparison of {d.table} was truncated; expected every differing key")
        if "," in d.key:
            raise ValueError(f"table {d.table} has a composite key ({d.key}); expected a single-column primary key")
        plans.append(TablePlan(d.table, d.key, list(d.keys.missing), list(d.keys.changed), list(d.keys.extra)))
    return plans


def foreign_key_order(tables: Iterable[str], references: Iterable[tuple[str, str]]) -> list[str]:
    """`tables` with every referenced table before the tables referencing it (child, parent pairs); ValueError on a
    cycle among them. Ties keep name order, so the order is stable."""
    pending = sorted(set(tables))
    parents = {t: {p for c, p in references if c == t and p != t and p in pending} for t in pending}
    order: list[str] = []
    while pending:
        ready = [t for t in pending if parents[t] <= set(order)]
        if not ready:
            raise ValueError(f"foreign keys form a cycle among {pending}; expected a tree of references")
        order += ready
        pending = [t for t in pending if t not in ready]
    return order


def xid32(xid: int) -> int:
    """A transaction id as `xmin` shows it: `pg_current_xact_id()` (xid8, epoch included) or 32-bit already."""
    if xid < 0:
        raise ValueError(f"transaction id {xid} is negative; expected pg_current_xact_id() or an xmin")
    return xid % 2**32


@dataclass
class TableResult:
    table: str
    copied: int
    inserted: int
    changed: int
    excluded_damage: int
    deleted_kept: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ReapplyResult:
    tables: list[TableResult]
    copied_keys: dict[str, list[Any]]
    seconds: float
    compare_seconds: float
    sequences: dict[str, int]

    @property
    def rows_reapplied(self) -> int:
        return sum(t.copied for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_reapplied": self.rows_reapplied,
            "tables": [t.to_dict() for t in self.tables],
            "seconds": round(self.seconds, 3),
            "compare_seconds": round(self.compare_seconds, 3),
            "sequences": self.sequences,
        }


def user_tables(conn: psycopg.Connection) -> list[str]:
    """Ordinary tables of the `public` schema (the service's), by name."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def references(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(child, parent) pairs of the foreign keys among tables of the `public` schema."""
    rows = conn.execute(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = 'public'"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def columns(conn: psycopg.Connection, table: str) -> list[str]:
    """Columns a row is copied with (generated columns are computed again on insert)."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attgenerated = '' ORDER BY attnum",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def _copy_table(
    damaged: psycopg.Connection, restored: psycopg.Connection, plan: TablePlan, xids: list[int]
) -> tuple[list[Any], int]:
    """Copy the plan's rows not written by `xids` into the restored table (inside its open transaction);
    returns (keys copied, rows skipped as the damage's)."""
    keys = plan.to_copy
    if not keys:
        return [], 0
    cols = columns(restored, plan.table)
    ident, key = sql.Identifier(plan.table), sql.Identifier(plan.key)
    col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    in_keys = sql.SQL("{k} = ANY({keys})").format(k=key, keys=sql.Literal(keys))
    by_damage = sql.SQL("(xmin::text)::bigint = ANY({x}::bigint[])").format(x=sql.Literal(xids or [-1]))
    excluded = damaged.execute(
        sql.SQL("SELECT count(*) FROM {t} WHERE {k} AND {d}").format(t=ident, k=in_keys, d=by_damage)
    ).fetchone()[0]
    stage = sql.Identifier(f"drtopo_reapply_{plan.table}")
    restored.execute(
        sql.SQL("CREATE TEMP TABLE {s} ON COMMIT DROP AS SELECT {c} FROM {t} WITH NO DATA").format(
            s=stage, c=col_list, t=ident
        )
    )
    source = sql.SQL("COPY (SELECT {c} FROM {t} WHERE {k} AND NOT {d}) TO STDOUT (FORMAT binary)").format(
        c=col_list, t=ident, k=in_keys, d=by_damage
    )
    with (
        damaged.cursor().copy(source) as out,
        restored.cursor().copy(sql.SQL("COPY {s} ({c}) FROM STDIN (FORMAT binary)").format(s=stage, c=col_list)) as inp,
    ):
        for chunk in out:
            inp.write(chunk)
    updates = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols)
    copied = restored.execute(
        sql.SQL(
            "INSERT INTO {t} ({c}) OVERRIDING SYSTEM VALUE SELECT {c} FROM {s} ON CONFLICT ({k}) DO UPDATE SET {u} "
            "RETURNING {k}"
        ).format(t=ident, c=col_list, s=stage, k=key, u=updates)
    ).fetchall()
    return [r[0] for r in copied], int(excluded)


def advance_sequences(damaged: psycopg.Connection, restored: psycopg.Connection) -> dict[str, int]:
    """Move each sequence of the restored database to at least the damaged one's value (ids handed out after T)."""
    moved = {}
    for (name,) in restored.execute("SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences").fetchall():
        ident = sql.SQL(name)  # already quoted by format('%I.%I')
        there = damaged.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
        here = restored.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
        if there[1] and (not here[1] or there[0] > here[0]):
            restored.execute("SELECT setval(%s, %s, true)", (name, there[0]))
            moved[name] = int(there[0])
    return moved


def find(damaged: psycopg.Connection, restored: psycopg.Connection) -> tuple[list[TablePlan], float]:
    """The re-apply plan for every service table, FK order, from one comparison; returns it with its seconds."""
    start = time.monotonic()
    tables = user_tables(restored)
    order = foreign_key_order(tables, references(restored))
    diffs = compare(damaged, restored, order, limit=ALL_KEYS)
    return plan_from_diffs(diffs), time.monotonic() - start


def reapply(damaged: psycopg.Connection, restored: psycopg.Connection, damage_xids: Sequence[int]) -> ReapplyResult:
    """Compare, then copy every row inserted or changed after T except the damage's, in one transaction on the
    restored side. Both connections autocommit, no transaction open."""
    start = time.monotonic()
    plans, compare_seconds = find(damaged, restored)
    xids = sorted({xid32(x) for x in damage_xids})
    results, copied_keys = [], {}
    with restored.transaction():
        for plan in plans:
            copied, excluded = _copy_table(damaged, restored, plan, xids)
            copied_keys[plan.table] = copied
            results.append(
                TableResult(plan.table, len(copied), len(plan.inserted), len(plan.changed), excluded, len(plan.deleted))
            )
        sequences = advance_sequences(damaged, restored)
    return ReapplyResult(results, copied_keys, time.monotonic() - start, compare_seconds, sequences)


def unreplayed(
    damaged: psycopg.Connection, restored: psycopg.Connection, damage_xids: Sequence[int]
) -> dict[str, list[Any]]:
    """Per table, the keys inserted or changed after T in the damaged database that the restored one still lacks,
    leaving out the damage's own row versions: empty lists once a re-apply is complete."""
    plans, _ = find(damaged, restored)
    xids = sorted({xid32(x) for x in damage_xids}) or [-1]
    left = {}
    for plan in plans:
        keys = plan.to_copy
        if not keys:
            left[plan.table] = []
            continue
        query = sql.SQL(
            "SELECT {k} FROM {t} WHERE {k} = ANY({keys}) AND NOT (xmin::text)::bigint = ANY({x}) ORDER BY 1"
        )
        rows = damaged.execute(
            query.format(
                k=sql.Identifier(plan.key),
                t=sql.Identifier(plan.table),
                keys=sql.Literal(keys),
                x=sql.Literal(xids),
            )
        ).fetchall()
        left[plan.table] = [r[0] for r in rows]
    return left
