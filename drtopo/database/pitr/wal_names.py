"""WAL file names, segments and timelines (pure, but for reading an archive folder): segment numbers from names,
timeline history files, the gaps in an archive's chain, and the newest commit an archive holds (pg_waldump)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from drtopo.database import pg_tools
from drtopo.database.pitr.labels import BaseBackup

WAL_NAME = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_WALDUMP_END = re.compile(r"tx:\s*(\d+),.*desc: (?:COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")


def newest_commit_in(waldump_output: str) -> datetime | None:
    """The newest COMMIT/ABORT time in `pg_waldump --rmgr=Transaction` output (recovery stops only at those)."""
    times = [datetime.fromisoformat(m.group(2)).replace(tzinfo=UTC) for m in _WALDUMP_END.finditer(waldump_output)]
    return max(times) if times else None


def archived_segments(archive_dir: Path) -> list[str]:
    """WAL segment files in the archive (no history or backup files), in WAL order."""
    return sorted(p.name for p in archive_dir.iterdir() if WAL_NAME.match(p.name)) if archive_dir.is_dir() else []


def newest_archived_commit(archive_dir: Path, bin_dir: str | None, segments_to_read: int = 8) -> datetime | None:
    """The newest commit time in the archive, read with pg_waldump from the newest segments backwards (bounded)."""
    segments = archived_segments(archive_dir)
    for name in reversed(segments[-segments_to_read:]):
        proc = pg_tools.run([pg_tools.binary("pg_waldump", bin_dir), "--rmgr=Transaction", str(archive_dir / name)])
        found = newest_commit_in(proc.stdout)
        if found is not None:
            return found
    return None


DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_HISTORY_LINE = re.compile(r"^\s*(\d+)\s+([0-9A-F]+)/([0-9A-F]+)", re.M | re.I)


def segment_of(name: str, segment_size: int) -> tuple[int, int]:
    """(timeline, segment number) of a WAL file name, for WAL segments of `segment_size` bytes (pure)."""
    m = WAL_NAME.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not a WAL segment name; expected 24 hex digits")
    per_log = 0x100000000 // segment_size
    return int(m.group(1), 16), int(m.group(2), 16) * per_log + int(m.group(3), 16)


def segment_name(timeline: int, number: int, segment_size: int) -> str:
    per_log = 0x100000000 // segment_size
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def parse_history(text: str) -> list[tuple[int, int]]:
    """A timeline history file as (parent timeline, LSN where it ended), oldest first (pure)."""
    return [(int(m.group(1)), (int(m.group(2), 16) << 32) + int(m.group(3), 16)) for m in _HISTORY_LINE.finditer(text)]


def expected_timeline(number: int, newest: int, history: list[tuple[int, int]], segment_size: int) -> int:
    """The timeline whose WAL holds segment `number` on the way to timeline `newest` (pure): a parent until the
    segment holding its switch point, from which the child has the segment (the parent's copy is `.partial`)."""
    for parent, end in history:
        if number < end // segment_size:
            return parent
    return newest


def chain_gaps(names: list[str], start_wal: str, segment_size: int, history: list[tuple[int, int]]) -> list[str]:
    """The segments missing between the base backup's first segment and the newest archived one, following the
    newest timeline's history (pure). An empty list: recovery can replay every segment up to the newest."""
    present = {segment_of(n, segment_size) for n in names}
    if not present:
        return [start_wal]
    newest_tli = max(t for t, _ in present)
    _, first = segment_of(start_wal, segment_size)
    last = max(n for t, n in present if t == newest_tli)
    missing = []
    for number in range(first, last + 1):
        tli = expected_timeline(number, newest_tli, history, segment_size)
        if (tli, number) not in present:
            missing.append(segment_name(tli, number, segment_size))
    return missing


def check_wal_chain(archive_dir: Path, backup: BaseBackup) -> list[str]:
    """Missing segments in the archive from `backup` to the newest segment (segment size from the files)."""
    names = archived_segments(archive_dir)
    size = (archive_dir / names[0]).stat().st_size if names else DEFAULT_SEGMENT_SIZE
    timelines = sorted({segment_of(n, size)[0] for n in names})
    newest = timelines[-1] if timelines else 1
    history_file = archive_dir / f"{newest:08X}.history"
    history = parse_history(history_file.read_text()) if history_file.is_file() else []
    return chain_gaps(names, backup.start_wal, size, history)


def segment_distance(archived: str | None, segment: str, segment_size: int) -> str:
    """How many segments lie between the last archived one and `segment` (pure; '?' when unknown)."""
    if archived is None or not WAL_NAME.match(archived[:24]) or not WAL_NAME.match(segment):
        return "?"
    _, a = segment_of(archived[:24], segment_size)
    _, b = segment_of(segment, segment_size)
    return str(max(b - a, 0))
