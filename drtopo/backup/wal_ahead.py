"""WAL archiving that keeps up: the archive command pushes the files PostgreSQL will ask for next beside the one it
asks for now, N uploads at once, as pgBackRest's `archive-async` with `process-max` and WAL-G's
`WALG_UPLOAD_CONCURRENCY` do.

PostgreSQL's archiver runs the archive command for one file at a time and waits for it, so a serial push archives
at one upload's latency per 16 MB segment and a write burst leaves a backlog that a restore from the bucket must
wait out. Here the command, asked for a file, also takes the next files PostgreSQL has marked ready
(`pg_wal/archive_status/<name>.ready`, in the order its archiver picks them: timeline history files first, then the
oldest segment) and uploads up to `parallel` of them at once. Each upload that the bucket has stored leaves an
acknowledgement in a spool folder (outside the data directory: `pg_basebackup` would copy anything inside it); when
PostgreSQL then asks for such a file the command answers at once. The manual's contract holds (PostgreSQL
"Continuous Archiving": success only once the file is safely archived): an acknowledgement is written only after
the bucket's PUT returned (or the bucket held the same bytes), and it is honoured only for the very file it was
written for: the same device, inode, size, modification and change time (a file marked ready is never changed
before it is archived; a recycled or rebuilt server's file of the same name differs, and is pushed again). A
look-ahead upload that fails leaves no acknowledgement: PostgreSQL asks for that file in its turn and its own push
says why.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drtopo.backup import wal
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput

READY_SUFFIX = ".ready"
ACK_SUFFIX = ".ok"
DEFAULT_PARALLEL = 4
MAX_PARALLEL = 32
HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")


def parallel_count(text: str) -> int:
    """`--parallel`'s value: 1 (serial, no spool) to MAX_PARALLEL; BadInput naming it otherwise (pure)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PARALLEL:
        raise BadInput(f"parallel uploads {text!r}; expected a whole number from 1 to {MAX_PARALLEL}")
    return value


def archive_order(names: list[str]) -> list[str]:
    """File names in the order PostgreSQL's archiver takes them: timeline history files first, then the rest by name,
    which is WAL order (pure)."""
    return sorted(names, key=lambda n: (not HISTORY.match(n), n))


def ready_names(wal_dir: Path) -> list[str]:
    """The files PostgreSQL has marked ready to archive in `wal_dir` (its pg_wal), in its archiver's order; only names
    an archive holds (anything else in archive_status is ignored)."""
    status = wal_dir / "archive_status"
    try:
        entries = os.listdir(status)
    except FileNotFoundError:
        return []
    names = [e[: -len(READY_SUFFIX)] for e in entries if e.endswith(READY_SUFFIX)]
    return archive_order([n for n in names if wal.ARCHIVE_NAME.match(n)])


@dataclass(frozen=True)
class Identity:
    """Which file an acknowledgement is for: device, inode, size, modification and change times when its bytes were
    read (a recycled or rebuilt server's file of the same name differs in at least one)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> Identity:
        st = path.stat()
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def line(self) -> str:
        return f"{self.device} {self.inode} {self.size} {self.mtime_ns} {self.ctime_ns}\n"

    @classmethod
    def parse(cls, text: str) -> Identity | None:
        parts = text.split()
        if len(parts) != 5 or not all(p.isdigit() for p in parts):
            return None
        return cls(*(int(p) for p in parts))


class Spool:
    """The acknowledgements of files uploaded ahead of PostgreSQL's request, one small file per archive file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _ack(self, name: str) -> Path:
        return self.folder / (wal.archive_name(name) + ACK_SUFFIX)

    def has(self, name: str) -> bool:
        return self._ack(name).exists()

    def mark(self, name: str, identity: Identity) -> None:
        """Record that `name`, as `identity`, is in the bucket (atomically: a crash leaves no half acknowledgement)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self._ack(name)
        part = final.with_name(final.name + ".part")
        part.write_text(identity.line())
        os.replace(part, final)

    def take(self, name: str, path: Path) -> bool:
        """True (and the acknowledgement consumed) when `name` was uploaded ahead as exactly the file at `path` now."""
        ack = self._ack(name)
        try:
            recorded = Identity.parse(ack.read_text())
        except FileNotFoundError:
            return False
        ack.unlink(missing_ok=True)
        try:
            return recorded is not None and recorded == Identity.of(path)
        except FileNotFoundError:
            return False

    def prune(self, keep: set[str]) -> int:
        """Drop acknowledgements of files no longer waiting to be archived (a rebuilt server's); how many."""
        dropped = 0
        for ack in self.folder.glob("*" + ACK_SUFFIX) if self.folder.is_dir() else []:
            if ack.name[: -len(ACK_SUFFIX)] not in keep:
                ack.unlink(missing_ok=True)
                dropped += 1
        return dropped


def look_ahead(ready: list[str], name: str, spool: Spool, parallel: int) -> list[str]:
    """The files to upload beside `name`: the next ready ones after it, not acknowledged yet, up to `parallel` - 1
    (pure but for the spool's listing)."""
    if parallel <= 1:
        return []
    chosen: list[str] = []
    for other in ready:
        if other == name or spool.has(other):
            continue
        chosen.append(other)
        if len(chosen) == parallel - 1:
            break
    return chosen


@dataclass(frozen=True)
class Pushed:
    """What one archive command did: its own file's outcome and the files it took ahead."""

    name: str
    detail: str
    from_spool: bool
    ahead: tuple[str, ...] = ()
    ahead_failed: tuple[str, ...] = ()


def _push_ahead_one(s3: Any, outputs: StackOutputs, wal_dir: Path, name: str, spool: Spool) -> None:
    path = wal_dir / name
    identity = Identity.of(path)  # before the read: the acknowledgement names the bytes read, never later ones
    wal.push(s3, outputs, path, name)
    spool.mark(name, identity)


def push(s3: Any, outputs: StackOutputs, wal_dir: Path, name: str, path: Path, spool: Spool, parallel: int) -> Pushed:
    """`archive_command` for `name` (its bytes at `path`), uploading the next ready files of `wal_dir` beside it.

    Returns once `name` is in the bucket (raises as `wal.push` does when it cannot be); the files taken ahead are
    acknowledged in `spool` as each lands, and one that fails is left for PostgreSQL's own request.
    """
    if spool.take(name, wal_dir / name):
        return Pushed(name, f"{name} was archived ahead (acknowledged in {spool.folder})", True)
    ready = ready_names(wal_dir)
    spool.prune(set(ready))
    ahead = look_ahead(ready, name, spool, parallel)
    with ThreadPoolExecutor(max_workers=1 + len(ahead), thread_name_prefix="wal-push") as pool:
        own = pool.submit(wal.push, s3, outputs, path, name)
        others = {n: pool.submit(_push_ahead_one, s3, outputs, wal_dir, n, spool) for n in ahead}
        detail = own.result()  # raises: PostgreSQL retries this file
        failed = tuple(n for n, f in others.items() if f.exception() is not None)
    return Pushed(name, detail, False, tuple(ahead), failed)
