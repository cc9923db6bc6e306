"""A fast comparison of the same tables in two PostgreSQL databases: which keys are missing, extra or changed.

For each table, bucketed by its primary key: one row count and checksum per bucket on both sides at once (one
connection per side, each in its own thread), then only the buckets whose checksums differ, split again until a
bucket is small enough to fetch its keys with a per-row hash. The first level reads the whole table with no filter
(its bucket counts add up to the table's row count), so equal tables cost one sequential scan per side, as a bare
`sum(hash_record(t))` does. A single integer key is bucketed by value ranges (its bounds read from the ends of the
key's index): a few differences cost a few index range scans more. Any other key (composite, text, uuid) is bucketed
by residues of its hash, each level a sequential scan.

A row's checksum is `hash_record(t)`: each column hashed by its type's hash function, so it does not depend on
how values are printed (values equal by their type's equality, such as numeric 1.0 and 1.00, compare equal).
Tables with a column type that has no hash function fall back to `hashtext(t::text)`, and `row::text` depends on
session settings (DateStyle, TimeZone, IntervalStyle, extra_float_digits, bytea_output, lc_monetary):
`SESSION_SETTINGS` pins them identically on both sides before anything is read.
Each side reads from one REPEATABLE READ snapshot, so every level of the descent sees the same data.
Both servers must run the same major version (hash functions may change between majors) and server encoding.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

# Pinned on both sides: row-to-text output (the fallback checksum) must be byte-identical, and the aggregation
# must stay in memory (work_mem) with no JIT compilation (it costs more than it saves on a 1M-row scan). Parallel
# workers are left to the server's own setting, as for any query: a whole-table level scans in parallel like a bare
# `sum(hash_record(t))` does (integer sums do not depend on which worker added which row).
SESSION_SETTINGS: dict[str, str] = {
    "DateStyle": "ISO, YMD",
    "TimeZone": "UTC",
    "IntervalStyle": "iso_8601",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "work_mem": "64MB",
    "enable_sort": "off",
    "jit": "off",
}
INTEGER_TYPES = ("smallint", "integer", "bigint")
FANOUT = 128
LEAF_ROWS = 20_000
DEFAULT_LIMIT = 20


class CompareError(Exception):
    """The two sides cannot be compared (no such table, no usable key, different columns or servers)."""


@dataclass(frozen=True, order=True)
class KeyRange:
    """Primary-key values lo..hi, both inclusive."""

    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1


def bucket_width(r: KeyRange, parts: int) -> int:
    """The width of each of (at most) `parts` equal buckets covering `r`."""
    if parts < 1:
        raise ValueError(f"parts {parts} is below 1; expected a positive bucket count")
    return max(1, -(-r.size // parts))


def bucket_range(r: KeyRange, width: int, bucket: int) -> KeyRange:
    """The keys of bucket number `bucket` when `r` is cut into buckets of `width`."""
    lo = r.lo + bucket * width
    return KeyRange(lo, min(r.hi, lo + width - 1))


Buckets = dict[int, tuple[int, int]]  # bucket number -> (row count, checksum)


def differing_buckets(a: Buckets, b: Buckets) -> list[int]:
    """Bucket numbers whose (count, checksum) differ, including buckets present on one side only."""
    return sorted(n for n in a.keys() | b.keys() if a.get(n) != b.get(n))


@dataclass
class KeyDiff:
    missing: list[Any] = field(default_factory=list)  # in the reference, not in the target
    extra: list[Any] = field(default_factory=list)  # in the target, not in the reference
    changed: list[Any] = field(default_factory=list)  # in both, with different content

    def __len__(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.changed)

    def add(self, other: KeyDiff) -> None:
        self.missing += other.missing
        self.extra += other.extra
        self.changed += other.changed


def diff_keys(reference: dict[Any, int], target: dict[Any, int]) -> KeyDiff:
    """Per-key comparison of `{key: row hash}` maps, each list sorted by key."""
    return KeyDiff(
        missing=sorted(reference.keys() - target.keys()),
        extra=sorted(target.keys() - reference.keys()),
        changed=sorted(k for k in reference.keys() & target.keys() if reference[k] != target[k]),
    )


def truncate(diff: KeyDiff, limit: int) -> KeyDiff:
    """At most `limit` keys in all, taken in key order across the three kinds."""
    kinds = sorted(
        [(k, "missing") for k in diff.missing]
        + [(k, "extra") for k in diff.extra]
        + [(k, "changed") for k in diff.changed]
    )[:limit]
    out = KeyDiff()
    for key, kind in kinds:
        getattr(out, kind).append(key)
    return out


@dataclass
class TableDiff:
    """What the comparison found for one table; `reference` is the side taken as correct."""

    table: str
    key: str
    reference_rows: int
    target_rows: int
    keys: KeyDiff
    differing_ranges: int
    truncated: bool
    seconds: float
    strategy: str

    @property
    def equal(self) -> bool:
        return self.reference_rows == self.target_rows and len(self.keys) == 0 and self.differing_ranges == 0

    def summary(self) -> str:
        if self.equal:
            return f"{self.reference_rows} rows equal"
        more = " (list truncated)" if self.truncated else ""
        return (
            f"rows {self.reference_rows} vs {self.target_rows}; {self.differing_ranges} differing buckets; "
            f"missing {self.keys.missing} extra {self.keys.extra} changed {self.keys.changed}{more}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": self.key,
            "reference_rows": self.reference_rows,
            "target_rows": self.target_rows,
            "missing": self.keys.missing,
            "extra": self.keys.extra,
            "changed": self.keys.changed,
            "differing_ranges": self.differing_ranges,
            "truncated": self.truncated,
            "seconds": round(self.seconds, 3),
            "strategy": self.strategy,
        }


class _Side:
    """One database, one connection, one snapshot."""

    def __init__(self, conn: psycopg.Connection, name: str) -> None:
        self.conn = conn
        self.name = name

    def rows(self, query: sql.Composable, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def begin(self) -> None:
        settings = sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, false)").format(name, value) for name, value in SESSION_SETTINGS.items()
        )
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT {}").format(settings))
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def end(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("ROLLBACK")

    def server(self) -> tuple[int, str]:
        (row,) = self.rows(sql.SQL("SELECT current_setting('server_version_num')::int / 10000, getdatabaseencoding()"))
        return row[0], row[1]

    def columns(self, table: str) -> list[tuple[str, str]]:
        found = self.rows(sql.SQL("SELECT to_regclass({})").format(sql.Literal(table)))
        if found[0][0] is None:
            raise CompareError(f"table {table!r} does not exist on the {self.name} side")
        return [
            (r[0], r[1])
            for r in self.rows(
                sql.SQL(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = {}::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
                ).format(sql.Literal(table))
            )
        ]

    def primary_key(self, table: str) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in self.rows(
                sql.SQL(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_index i "
                    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
                    "WHERE i.indrelid = {}::regclass AND i.indisprimary "
                    "ORDER BY array_position(i.indkey::int2[], a.attnum)"
                ).format(sql.Literal(table))
            )
        ]

    def hashable(self, table: str) -> bool:
        """Whether every column type has a hash function (probing one row inside a savepoint)."""
        try:
            with self.conn.transaction():
                self.rows(sql.SQL("SELECT hash_record(t) FROM {} t LIMIT 1").format(sql.Identifier(table)))
        except psycopg.errors.UndefinedFunction:
            return False
        return True


MASK = sql.SQL("9223372036854775807::int8")  # clears the sign bit, so `%` gives a residue >= 0
MAX_MODULUS = 2**62


@dataclass(frozen=True)
class TablePlan:
    """The SQL for one table: how rows are bucketed by key and hashed.

    An integer key buckets by value ranges (each level an index range scan once ranges are narrow); any other key
    by residues of its hash (`hash % m = r`, split into `hash % (m * fanout)`), a sequential scan per level.
    """

    table: str
    key: tuple[str, ...]
    by_range: bool
    row_hash: sql.Composable  # int4, summed per bucket
    row_hash64: sql.Composable  # int8, per key at the leaves
    strategy: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.table)

    @property
    def keys(self) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(k) for k in self.key)

    @property
    def key_hash(self) -> sql.Composable:
        return sql.SQL("(hash_record_extended(ROW({}), 0) & {})").format(self.keys, MASK)

    def bounds(self) -> sql.Composable:
        """(lowest key, highest key) of an integer key, read from the ends of its index (no scan)."""
        k = sql.Identifier(self.key[0])
        return sql.SQL("SELECT min({k}), max({k}) FROM {t}").format(k=k, t=self.ident)

    def root(self, bounds: Sequence[tuple[Any, Any]]) -> KeyRange | tuple[int, int] | None:
        """The bucket holding every row of both sides (None: both are empty), from each side's `bounds()`."""
        if not self.by_range:
            return (1, 0)
        lows = [lo for lo, _ in bounds if lo is not None]
        highs = [hi for _, hi in bounds if hi is not None]
        return KeyRange(min(lows), max(highs)) if lows else None

    def level(self, node: Any, fanout: int, whole: bool = False) -> tuple[sql.Composable, tuple[Any, ...]]:
        """Rows (bucket, count, checksum) of the buckets `node` splits into; `whole`: `node` is the root, which
        holds every row, so the query reads the table with no filter."""
        if self.by_range:
            bucket = sql.SQL("({} - %s) / %s").format(sql.Identifier(self.key[0]))
            where = sql.SQL("{} BETWEEN %s AND %s").format(sql.Identifier(self.key[0]))
            params: tuple[Any, ...] = (node.lo, bucket_width(node, fanout))
            filtered = (node.lo, node.hi)
        else:
            bucket, where = sql.SQL("{} %% %s").format(self.key_hash), sql.SQL("{} %% %s = %s").format(self.key_hash)
            params, filtered = (node[0] * fanout,), tuple(node)
        query = sql.SQL("SELECT {b} AS b, count(*), sum({h}) FROM {t} t{w} GROUP BY 1").format(
            b=bucket,
            h=self.row_hash,
            t=self.ident,
            w=sql.SQL("") if whole else sql.SQL(" WHERE {}").format(where),
        )
        return query, params if whole else params + filtered

    def child(self, node: Any, bucket: int, fanout: int) -> Any:
        if self.by_range:
            return bucket_range(node, bucket_width(node, fanout), bucket)
        return (node[0] * fanout, bucket)

    def indivisible(self, node: Any, fanout: int) -> bool:
        return node.size <= fanout if self.by_range else node[0] * fanout > MAX_MODULUS

    def leaf(self, node: Any) -> tuple[sql.Composable, tuple[Any, ...]]:
        """Rows (key columns..., 64-bit row hash) of the bucket `node`."""
        if self.by_range:
            where, params = sql.SQL("{} BETWEEN %s AND %s").format(sql.Identifier(self.key[0])), (node.lo, node.hi)
        else:
            where, params = sql.SQL("{} %% %s = %s").format(self.key_hash), node
        query = sql.SQL("SELECT {k}, {h} FROM {t} t WHERE {w}").format(
            k=self.keys, h=self.row_hash64, t=self.ident, w=where
        )
        return query, tuple(params)

    def key_of(self, row: tuple[Any, ...]) -> Any:
        return row[0] if len(self.key) == 1 else tuple(row[:-1])


def plan_table(table: str, sides: Sequence[_Side]) -> TablePlan:
    columns = [s.columns(table) for s in sides]
    if columns[0] != columns[1]:
        raise CompareError(f"table {table!r} has different columns: {columns[0]} vs {columns[1]}")
    key = sides[0].primary_key(table)
    if not key:
        raise CompareError(f"table {table!r} has no primary key; expected one to tell rows apart")
    by_range = len(key) == 1 and key[0][1] in INTEGER_TYPES
    names = tuple(name for name, _ in key)
    if all(s.hashable(table) for s in sides):
        hashes = sql.SQL("hash_record(t)"), sql.SQL("hash_record_extended(t, 0)"), "hash_record"
    else:
        hashes = sql.SQL("hashtext(t::text)"), sql.SQL("hashtextextended(t::text, 0)"), "row-text"
    return TablePlan(table, names, by_range, *hashes)


class Comparison:
    """Compares tables between a reference database and a target, both sides queried concurrently."""

    def __init__(
        self,
        reference: psycopg.Connection,
        target: psycopg.Connection,
        limit: int = DEFAULT_LIMIT,
        fanout: int = FANOUT,
        leaf_rows: int = LEAF_ROWS,
    ) -> None:
        if limit < 0 or fanout < 2 or leaf_rows < 1:
            raise ValueError(f"limit {limit}, fanout {fanout}, leaf_rows {leaf_rows}; expected >= 0, >= 2, >= 1")
        self.sides = (_Side(reference, "reference"), _Side(target, "target"))
        self.limit = limit
        self.fanout = fanout
        self.leaf_rows = leaf_rows
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="compare")

    def _both(self, query: sql.Composable, params: Sequence[Any] = ()) -> tuple[list[tuple[Any, ...]], ...]:
        futures = [self.pool.submit(s.rows, query, params) for s in self.sides]
        return tuple(f.result() for f in futures)

    def tables(self, names: Iterable[str]) -> list[TableDiff]:
        servers = [s.server() for s in self.sides]
        if servers[0] != servers[1]:
            raise CompareError(
                f"servers differ (major version, encoding): reference {servers[0]} vs target {servers[1]}; "
                "expected the same on both sides"
            )
        for s in self.sides:
            s.begin()
        try:
            return [self.table(name) for name in names]
        finally:
            for s in self.sides:
                s.end()
            self.pool.shutdown()

    def table(self, name: str) -> TableDiff:
        start = time.monotonic()
        plan = plan_table(name, self.sides)
        root = plan.root([rows[0] for rows in self._both(plan.bounds())] if plan.by_range else [])
        buckets: tuple[Buckets, Buckets] = ({}, {})
        found, ranges, skipped = KeyDiff(), 0, 0
        if root is not None:
            buckets = self._buckets(*plan.level(root, self.fanout, whole=True))
            found, ranges, skipped = self._descend(plan, root, buckets)
        limited = truncate(found, self.limit)
        return TableDiff(
            table=name,
            key=", ".join(plan.key),
            reference_rows=sum(count for count, _ in buckets[0].values()),
            target_rows=sum(count for count, _ in buckets[1].values()),
            keys=limited,
            differing_ranges=ranges,
            truncated=len(limited) < len(found) or skipped > 0,
            seconds=time.monotonic() - start,
            strategy=plan.strategy,
        )

    def _buckets(self, query: sql.Composable, params: Sequence[Any]) -> tuple[Buckets, Buckets]:
        ref, tgt = ({b: (c, s) for b, c, s in rows} for rows in self._both(query, params))
        return ref, tgt

    def _descend(self, plan: TablePlan, node: Any, buckets: tuple[Buckets, Buckets]) -> tuple[KeyDiff, int, int]:
        """Differences within bucket `node`, whose sub-buckets are `buckets` (reference, target), as (keys,
        differing leaf buckets, buckets skipped once `limit` keys were found): the keys of small differing buckets,
        recursing into large ones."""
        ref, tgt = buckets
        found, ranges, skipped = KeyDiff(), 0, 0
        for b in differing_buckets(ref, tgt):
            if len(found) >= self.limit:
                ranges += 1
                skipped += 1
                continue
            sub = plan.child(node, b, self.fanout)
            size = max(ref.get(b, (0, 0))[0], tgt.get(b, (0, 0))[0])
            if size <= self.leaf_rows or plan.indivisible(sub, self.fanout):
                ranges += 1
                a, t = ({plan.key_of(r): r[-1] for r in rows} for rows in self._both(*plan.leaf(sub)))
                found.add(diff_keys(a, t))
            else:
                deeper, n, m = self._descend(plan, sub, self._buckets(*plan.level(sub, self.fanout)))
                found.add(deeper)
                ranges += n
                skipped += m
        return found, ranges, skipped


def compare(
    reference: psycopg.Connection,
    target: psycopg.Connection,
    tables: Iterable[str],
    limit: int = DEFAULT_LIMIT,
    fanout: int = FANOUT,
    leaf_rows: int = LEAF_ROWS,
) -> list[TableDiff]:
    """Compare `tables` between two connections (autocommit, no transaction open); see the module docstring."""
    return Comparison(reference, target, limit=limit, fanout=fanout, leaf_rows=leaf_rows).tables(tables)
