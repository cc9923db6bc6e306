"""Finding the damage in the WAL (self-managed PostgreSQL): which transactions committed around a time, how many rows
each inserted, updated and deleted per table, and the time T just before a given transaction's commit.

Read-only: pg_waldump over archived segments (the archive folder, or segments a caller fetched from the WAL bucket)
and over the server's own `pg_wal` for what is not archived yet; nothing is written, no WAL switch is forced. The
parsing of pg_waldump's text is pure (`parse_waldump`); relation file numbers become table names through the live
server's `pg_filenode_relation` when it answers.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from drtopo.database import connect as db
from drtopo.database import pg_tools
from drtopo.database.pitr.wal_names import WAL_NAME, segment_of
from drtopo.errors import one_line
from drtopo.outputs import SelfManagedPostgres, StackOutputs
from drtopo.report import BadInput, Report

DEFAULT_WIDTH = timedelta(minutes=10)  # --width: the window is --around ± half of it
JUST_BEFORE = timedelta(microseconds=1)  # T for --damage-xid: recovery to T stops before the damage's commit
SEGMENTS_LIMIT = 256  # segments read at most for one question (16 MiB each by default: 4 GiB of WAL)

RDS_INSTEAD = (
    "--find-damage reads the WAL with pg_waldump, which RDS does not expose; on RDS: `restore pitr --rds --window` "
    "for the restorable window, `restore pitr --rds --time T` (a point-in-time copy into a new instance) at a time "
    "before the suspected damage, then `validate --against <copy's DSN>` to compare it with the damaged database"
)

# pg_waldump's record line (PostgreSQL 13-17): rmgr, its transaction, its LSN, the description, the first block's rel.
_RECORD = re.compile(
    r"^rmgr: (\w+)\s+len \(rec/tot\):\s*\d+/\s*\d+, tx:\s*(\d+), lsn: ([0-9A-F]+/[0-9A-F]+), .*?desc: (.*)$"
)
_COMMIT = re.compile(r"^(COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: UTC|[+-]\d\d(?::?\d\d)?)?)(.*)$")
_SUBXACTS = re.compile(r"subxacts: ([\d ]+)")
_BLOCK = re.compile(r"blkref #\d+: rel (\d+)/(\d+)/(\d+)")
_MULTI = re.compile(r"^MULTI_INSERT(?:\+INIT)? (?:(\d+) tuples|ntuples: (\d+))")
_HEAP_KIND = {"INSERT": "inserted", "INSERT+INIT": "inserted", "UPDATE": "updated", "HOT_UPDATE": "updated"}
_HEAP_KIND |= {"UPDATE+INIT": "updated", "HOT_UPDATE+INIT": "updated", "DELETE": "deleted"}


@dataclass
class Rows:
    """Rows one transaction wrote to one relation."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.deleted

    def add(self, kind: str, count: int) -> None:
        setattr(self, kind, getattr(self, kind) + count)

    def to_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "updated": self.updated, "deleted": self.deleted}


@dataclass(frozen=True)
class Relation:
    """A relation file as the WAL names it: tablespace, database and relfilenode (OIDs)."""

    tablespace: int
    database: int
    filenode: int

    def __str__(self) -> str:
        return f"{self.tablespace}/{self.database}/{self.filenode}"


@dataclass
class Transaction:
    """A committed transaction as read from the WAL: its (top-level) xid, commit time and LSN, rows per relation."""

    xid: int
    committed_at: datetime
    commit_lsn: str
    rows: dict[Relation, Rows] = field(default_factory=dict)
    names: dict[Relation, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(r.total for r in self.rows.values())

    def name(self, rel: Relation) -> str:
        return self.names.get(rel, f"rel {rel}")

    def per_table(self) -> dict[str, Rows]:
        """Rows per table name (a relation not named keeps its `rel ts/db/filenode`), most rows first."""
        out: dict[str, Rows] = {}
        for rel, rows in self.rows.items():
            into = out.setdefault(self.name(rel), Rows())
            for kind, count in rows.to_dict().items():
                into.add(kind, count)
        return dict(sorted(out.items(), key=lambda kv: -kv[1].total))

    def to_dict(self) -> dict[str, Any]:
        return {
            "xid": self.xid,
            "committed_at": self.committed_at.isoformat(),
            "commit_lsn": self.commit_lsn,
            "rows": self.total,
            "tables": {name: rows.to_dict() for name, rows in self.per_table().items()},
        }


def _commit_time(text: str) -> datetime:
    stamp = text.strip()
    if stamp.endswith(" UTC"):
        return datetime.fromisoformat(stamp[:-4]).replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_waldump(text: str) -> list[Transaction]:
    """The committed transactions in pg_waldump output, in commit order (pure). Heap and Heap2 records count rows
    (INSERT, MULTI_INSERT's tuples, UPDATE and HOT_UPDATE, DELETE) against their first block's relation; a
    subtransaction's rows count for the transaction whose commit lists it; aborted transactions and transactions
    whose commit is not in `text` are left out."""
    pending: dict[int, dict[Relation, Rows]] = {}
    done: list[Transaction] = []
    for line in text.splitlines():
        m = _RECORD.match(line)
        if m is None:
            continue
        rmgr, xid, lsn, desc = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        if rmgr == "Transaction":
            end = _COMMIT.match(desc)
            if end is None:
                continue
            subs = _SUBXACTS.search(end.group(3))
            members = [xid, *(int(s) for s in subs.group(1).split())] if subs else [xid]
            rows: dict[Relation, Rows] = {}
            for member in members:
                for rel, counted in pending.pop(member, {}).items():
                    into = rows.setdefault(rel, Rows())
                    for kind, count in counted.to_dict().items():
                        into.add(kind, count)
            if end.group(1) == "COMMIT":
                done.append(Transaction(xid, _commit_time(end.group(2)), lsn, rows))
            continue
        counted_as = _row_change(rmgr, desc)
        block = _BLOCK.search(desc)
        if counted_as is None or block is None or xid == 0:
            continue
        rel = Relation(int(block.group(1)), int(block.group(2)), int(block.group(3)))
        pending.setdefault(xid, {}).setdefault(rel, Rows()).add(*counted_as)
    return done


def _row_change(rmgr: str, desc: str) -> tuple[str, int] | None:
    if rmgr == "Heap":
        kind = _HEAP_KIND.get(desc.split(" ", 1)[0].rstrip(","))
        return (kind, 1) if kind else None
    if rmgr == "Heap2":
        multi = _MULTI.match(desc)
        if multi:
            return "inserted", int(multi.group(1) or multi.group(2))
    return None


def in_window(transactions: Iterable[Transaction], start: datetime, end: datetime) -> list[Transaction]:
    """The transactions committed in [start, end], biggest first (rows written), then by commit time (pure);
    one per (xid, commit time): a timeline's first segment repeats its parent's records up to the fork."""
    seen: dict[tuple[int, datetime], Transaction] = {}
    for t in transactions:
        if start <= t.committed_at <= end:
            seen.setdefault((t.xid, t.committed_at), t)
    return sorted(seen.values(), key=lambda t: (-t.total, t.committed_at))


def only_tables(transactions: Iterable[Transaction], tables: Sequence[str]) -> list[Transaction]:
    """The transactions that wrote to one of `tables` (a name as shown, with or without its schema), with only those
    tables' rows (pure; order kept)."""

    def plain(name: str) -> str:
        return name.lower().removeprefix("public.")

    wanted = {plain(t) for t in tables}
    out = []
    for t in transactions:
        rows = {rel: r for rel, r in t.rows.items() if plain(t.name(rel)) in wanted}
        if rows:
            out.append(Transaction(t.xid, t.committed_at, t.commit_lsn, rows, t.names))
    return sorted(out, key=lambda t: (-t.total, t.committed_at))


def commit_of(transactions: Iterable[Transaction], xid32: int) -> Transaction | None:
    """The newest committed transaction with 32-bit xid `xid32` (pure)."""
    found = [t for t in transactions if t.xid == xid32]
    return max(found, key=lambda t: t.committed_at) if found else None


def time_before(commits: Sequence[Transaction]) -> datetime:
    """T for a restore that must leave out every one of `commits` (pure): just before the earliest of them, so
    recovery to T (inclusive) stops at that commit and applies every earlier one."""
    if not commits:
        raise ValueError("no commit to restore before; expected at least one")
    return min(t.committed_at for t in commits) - JUST_BEFORE


# ---- reading the WAL ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A WAL segment to read: its name, when it was last written (an archived file's mtime, an object's upload time:
    no record in it is later) and where it is; `fetch` brings a remote one to a local path."""

    name: str
    written_at: datetime
    where: str
    path: Path | None = None
    fetch: Callable[[], Path] | None = None

    def local(self) -> Path:
        if self.path is not None:
            return self.path
        if self.fetch is None:
            raise RuntimeError(f"segment {self.name} has neither a path nor a way to fetch it")
        return self.fetch()


def wal_order(segments: Iterable[Segment]) -> list[Segment]:
    """Segments by WAL position, then timeline (pure); one per (timeline, number), the local copy preferred."""
    by_key: dict[tuple[int, int], Segment] = {}
    for s in segments:
        tli, number = segment_of(s.name, 1 << 24)  # the order does not depend on the segment size
        key = (number, tli)
        if key not in by_key or (by_key[key].path is None and s.path is not None):
            by_key[key] = s
    return [by_key[k] for k in sorted(by_key)]


def first_to_read(segments: Sequence[Segment], start: datetime) -> int:
    """The index to start reading at for records from `start` on (pure): the segment before the first written at
    or after `start` (its records may still be in flight when the previous one was archived late)."""
    for i, s in enumerate(segments):
        if s.written_at >= start:
            return max(i - 1, 0)
    return max(len(segments) - 1, 0)


def local_segments(folder: Path, where: str) -> list[Segment]:
    """The WAL segment files in `folder` with their modification times."""
    if not folder.is_dir():
        return []
    return [
        Segment(p.name, datetime.fromtimestamp(p.stat().st_mtime, UTC), where, p)
        for p in sorted(folder.iterdir())
        if WAL_NAME.match(p.name)
    ]


def waldump(path: Path, bin_dir: str | None, user: str | None) -> str:
    """pg_waldump's text for one segment. Its exit code is not a failure: the segment being written ends in an
    invalid record (pg_waldump says so and exits 1 after printing every valid one), a recycled one has none."""
    proc = subprocess.run(
        [pg_tools.binary("pg_waldump", bin_dir), str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        timeout=120,
        **pg_tools.as_user(user),
    )
    return proc.stdout


@dataclass
class WalRead:
    """What was read: the transactions, the segments read and where they came from."""

    transactions: list[Transaction]
    segments: list[str]
    sources: list[str]


def read_from(
    segments: Sequence[Segment], start: datetime, stop: Callable[[list[Transaction]], bool], dump: Callable[[Path], str]
) -> WalRead:
    """Read `segments` (WAL order) from the one that may hold `start` on, until `stop` says the transactions read so
    far answer the question or SEGMENTS_LIMIT segments are read."""
    text, read = [], []
    for s in segments[first_to_read(segments, start) :][:SEGMENTS_LIMIT]:
        text.append(dump(s.local()))
        read.append(s.name)
        if stop(parse_waldump("\n".join(text))):
            break
    return WalRead(parse_waldump("\n".join(text)), read, sorted({s.where for s in segments}))


def server_segments(pg: SelfManagedPostgres, extra: Sequence[Segment] = ()) -> list[Segment]:
    """The archive folder's segments (or `extra`, a copy of the WAL bucket) and the server's `pg_wal` for those not
    archived yet, in WAL order."""
    archived = list(extra) or local_segments(Path(pg.archive_dir), f"archive {pg.archive_dir}")
    names = {s.name for s in archived}
    live = [s for s in local_segments(Path(pg.data_dir) / "pg_wal", f"pg_wal of {pg.data_dir}") if s.name not in names]
    return wal_order([*archived, *live])


def _server(outputs: StackOutputs, instead: str = RDS_INSTEAD) -> SelfManagedPostgres:
    if outputs.self_managed is None:
        raise BadInput(instead)
    return outputs.self_managed


# ---- naming relations ------------------------------------------------------------------------------------------


def name_relations(conn: psycopg.Connection, relations: Iterable[Relation]) -> dict[Relation, str]:
    """Table names of `relations` in the connected database (pg_filenode_relation); those of other databases, and
    files no relation has any more (dropped, rewritten since), stay unnamed."""
    dat_oid, dat_ts = conn.execute(
        "SELECT oid, dattablespace FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    names = {}
    for rel in set(relations):
        if rel.database not in (dat_oid, 0):
            continue
        tablespace = 0 if rel.tablespace == dat_ts else rel.tablespace
        found = conn.execute("SELECT pg_filenode_relation(%s, %s)::regclass::text", (tablespace, rel.filenode))
        name = found.fetchone()[0]
        if name is not None:
            names[rel] = name
    return names


def in_database(transactions: Iterable[Transaction], oid: int) -> list[Transaction]:
    """The transactions with only their rows in database `oid` (and shared catalogs); those that wrote only in other
    databases (autovacuum's statistics of template1, another application) are left out (pure; order kept)."""
    out = []
    for t in transactions:
        rows = {rel: r for rel, r in t.rows.items() if rel.database in (oid, 0)}
        if rows or not t.rows:
            out.append(Transaction(t.xid, t.committed_at, t.commit_lsn, rows, t.names))
    return out


def _name_all(outputs: StackOutputs, transactions: list[Transaction], report: Report) -> list[Transaction]:
    """`transactions` of the service's database with their tables named by the live server; all of them, unnamed,
    when it does not answer (a skip says so)."""
    relations = {rel for t in transactions for rel in t.rows}
    if not relations:
        return transactions
    try:
        with db.connect(outputs) as conn:
            oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
            names = name_relations(conn, relations)
    except psycopg.Error as exc:
        report.skip(
            "table names",
            f"the server does not answer ({one_line(exc)}): tables shown as rel tablespace/database/relfilenode "
            "(every database's); map them with pg_filenode_relation() once it is up",
        )
        return transactions
    mine = in_database(transactions, oid)
    for t in mine:
        t.names = names
    unnamed = ", ".join(sorted(str(r) for t in mine for r in t.rows if r not in names))
    gone = f"; not found there (dropped or rewritten since): {unnamed}" if unnamed else ""
    others = len(transactions) - len(mine)
    elsewhere = f"; {others} transactions in other databases left out" if others else ""
    report.check("table names", True, f"{len(names)} relations named by the live server{gone}{elsewhere}")
    return mine


# ---- the two questions -------------------------------------------------------------------------------------------


def find_damage(
    outputs: StackOutputs,
    report: Report,
    around: datetime,
    width: timedelta = DEFAULT_WIDTH,
    tables: Sequence[str] = (),
    bucket: Sequence[Segment] = (),
) -> list[Transaction]:
    """The transactions committed in [around - width/2, around + width/2], biggest first, with rows per table
    (only `tables`' when given), from the archive folder (or `bucket`, segments of the WAL bucket) and the server's
    `pg_wal`. BadInput on RDS (the WAL is not readable there) or when no WAL covers the window."""
    pg = _server(outputs)
    if width <= timedelta(0):
        raise BadInput(f"--width {width.total_seconds():g} s; expected a positive number of seconds")
    start, end = around - width / 2, around + width / 2
    segments = server_segments(pg, bucket)
    if not segments:
        raise BadInput(f"no WAL segment in {pg.archive_dir} or {pg.data_dir}/pg_wal; nothing to read")

    def past_end(found: list[Transaction]) -> bool:
        return bool(found) and found[-1].committed_at > end

    read = read_from(segments, start, past_end, lambda p: waldump(p, pg.bin_dir, pg.os_user))
    found = _name_all(outputs, in_window(read.transactions, start, end), report)
    found.sort(key=lambda t: (-t.total, t.committed_at))  # other databases' rows left out: sizes may change
    if tables:
        found = only_tables(found, tables)
    report.measured.update(
        window={"from": start.isoformat(), "to": end.isoformat()},
        wal_read={"segments": read.segments, "from": read.sources},
        transactions=[t.to_dict() for t in found],
    )
    report.check(
        "WAL read",
        True,
        f"{len(read.segments)} segments ({read.segments[0]} .. {read.segments[-1]}) from {' and '.join(read.sources)}",
    )
    return found


def target_before(
    outputs: StackOutputs, report: Report, damage_xids: Sequence[int], bucket: Sequence[Segment] = ()
) -> tuple[datetime, str]:
    """T just before the earliest commit of `damage_xids` (64-bit or 32-bit ids), found in the WAL from the newest
    segment backwards; BadInput when one is not found committed. Returns T and why it was chosen."""
    pg = _server(outputs, "--damage-xid without --time reads the WAL, which RDS does not expose; pass --time T")
    wanted = {x & 0xFFFFFFFF: x for x in damage_xids}
    segments = server_segments(pg, bucket)
    texts: list[str] = []
    found: dict[int, Transaction] = {}
    for s in reversed(segments[-SEGMENTS_LIMIT:]):
        texts.insert(0, waldump(s.local(), pg.bin_dir, pg.os_user))
        transactions = parse_waldump("\n".join(texts))
        found = {x: t for x in wanted if (t := commit_of(transactions, x)) is not None}
        if len(found) == len(wanted):
            break
    missing = [wanted[x] for x in wanted if x not in found]
    if missing:
        raise BadInput(
            f"no commit of transaction {', '.join(map(str, missing))} in the last {min(len(segments), SEGMENTS_LIMIT)} "
            f"WAL segments of {pg.archive_dir} and pg_wal; pass --time T (just before the damage) instead"
        )
    first = min(found.values(), key=lambda t: t.committed_at)
    target = time_before(list(found.values()))
    first = (_name_all(outputs, [first], report) or [first])[0]
    rows = ", ".join(
        f"{name}: {r.inserted} inserted, {r.updated} updated, {r.deleted} deleted"
        for name, r in first.per_table().items()
    )
    why = (
        f"T = {target.isoformat()}, just before transaction {first.xid} committed at {first.committed_at.isoformat()} "
        f"(LSN {first.commit_lsn}; {rows or 'no rows'}): recovery to T applies every earlier commit and not that one"
    )
    report.measured.update(target_from_xid={"xid": first.xid, "committed_at": first.committed_at.isoformat()})
    report.check("T from --damage-xid", True, why)
    return target, why


def table_lines(transactions: Sequence[Transaction], limit: int = 20) -> list[str]:
    """The terminal's table: one line per transaction and table, biggest transaction first (pure)."""
    if not transactions:
        return ["no transaction committed in the window"]
    width = max(24, *(len(name) for t in transactions[:limit] for name in t.per_table()))
    counts = f"{'inserted':>9} {'updated':>9} {'deleted':>9}"
    lines = [f"{'xid':>10}  {'committed at (UTC)':<26}  {'table':<{width}}  {counts}"]
    for t in transactions[:limit]:
        per_table = t.per_table() or {"(no rows)": Rows()}
        for i, (name, rows) in enumerate(per_table.items()):
            head = f"{t.xid:>10}  {t.committed_at.strftime('%Y-%m-%d %H:%M:%S.%f'):<26}" if i == 0 else " " * 38
            lines.append(f"{head}  {name:<{width}}  {rows.inserted:>9} {rows.updated:>9} {rows.deleted:>9}")
    if len(transactions) > limit:
        lines.append(f"... {len(transactions) - limit} more transactions in the JSON report")
    return lines
