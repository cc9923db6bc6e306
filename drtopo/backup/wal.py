"""The WAL bucket: PostgreSQL's WAL archive and base backups in S3, as WAL-G and pgBackRest keep them.

`push` is what `archive_command` runs for each finished segment (and history and backup-history file): it uploads
under `wal/<file name>` with SSE-KMS and the file's SHA-256 in the object's metadata. PostgreSQL may archive a file
again after a crash, so an object already there with the same SHA-256 is success; with other bytes it is refused
(never overwritten), which is what the PostgreSQL manual asks of an archive command ("Continuous Archiving": the
command should refuse to overwrite any pre-existing archive file). `fetch` is the matching `restore_command`:
exit 0 with the file in place and its checksum verified, or "not found", which PostgreSQL reads as the end of the
archive.

Base backups (`pg_basebackup -F t`) go under `basebackups/<start WAL file>/` as `base.tar`, `pg_wal.tar` and their
`backup_label` as a small object of its own, so the restorable window is read without downloading any backup.
`materialize` brings what a restore needs into a local folder (the labels, the history files, the segments from a
base backup on, in parallel and checksum-verified) so that recovery replays the bucket's archive and nothing else;
`chain_gaps` checks the archive from the listing alone.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from drtopo.backup import store
from drtopo.database import pitr
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput, Report

WAL_PREFIX = "wal/"
BASE_PREFIX = "basebackups/"
LABEL_OBJECT = "backup_label"
BASE_FILES = ("base.tar", "pg_wal.tar")
# What PostgreSQL hands an archive command: segments, timeline history, backup history and (at a timeline switch,
# from pg_receivewal) partial segments.
ARCHIVE_NAME = re.compile(r"^[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?$|^[0-9A-F]{8}\.history$")
PARALLEL_DOWNLOADS = 4


class WalConflict(RuntimeError):
    """The bucket holds a different file under the name being archived."""


def archive_name(name: str) -> str:
    """`name` if it is a file name PostgreSQL archives; BadInput otherwise (never a path)."""
    if not ARCHIVE_NAME.match(name):
        raise BadInput(
            f"{name!r} is not a WAL archive file name; expected a segment (24 hex digits), "
            "<timeline>.history or <segment>.<offset>.backup"
        )
    return name


def wal_key(name: str) -> str:
    return WAL_PREFIX + archive_name(name)


def base_key(start_wal: str, file: str) -> str:
    return f"{BASE_PREFIX}{archive_name(start_wal)}/{file}"


def push(s3: Any, outputs: StackOutputs, path: Path, name: str) -> str:
    """Archive `path` as `name` in the WAL bucket; idempotent for the same bytes, refusing other bytes."""
    key = wal_key(name)
    data = path.read_bytes()  # one read: a segment is at most 1 GB and usually 16 MB
    digest = hashlib.sha256(data).hexdigest()
    try:
        head = s3.head_object(Bucket=outputs.wal_bucket, Key=key)
    except ClientError as exc:
        if not store.is_missing(exc):
            raise
    else:
        stored = head.get("Metadata", {}).get("sha256")
        if stored == digest:
            return f"{name} already archived in s3://{outputs.wal_bucket}/{key} (same SHA-256)"
        raise WalConflict(
            f"s3://{outputs.wal_bucket}/{key} exists with SHA-256 {stored or 'unknown'}, not {digest}: "
            "refusing to overwrite an archived WAL file"
        )
    s3.put_object(
        Bucket=outputs.wal_bucket,
        Key=key,
        Body=data,
        Metadata={"sha256": digest, "source": outputs.db_instance_id},
        **store.encryption_args(outputs),
    )
    return f"{name} archived to s3://{outputs.wal_bucket}/{key}"


def fetch(s3: Any, bucket: str, name: str, dest: Path) -> bool:
    """Download `name` from the WAL bucket to `dest` (atomically, checksum verified); False when it is not there."""
    partial = dest.with_name(dest.name + ".drtopo-part")
    try:
        _download_verified(s3, bucket, wal_key(name), partial)
    except ClientError as exc:
        partial.unlink(missing_ok=True)
        if store.is_missing(exc):
            return False
        raise
    os.replace(partial, dest)
    return True


def listing(s3: Any, bucket: str, prefix: str = WAL_PREFIX) -> dict[str, int]:
    """Object name (after `prefix`) -> size, for every object under `prefix`."""
    return {name: size for name, (size, _) in _objects(s3, bucket, prefix).items()}


def _objects(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[int, datetime]]:
    found: dict[str, tuple[int, datetime]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix) :]] = (int(item["Size"]), item["LastModified"])
    return found


def _text(s3: Any, bucket: str, key: str) -> str:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


@dataclass(frozen=True)
class BucketArchive:
    """What the WAL bucket holds: archive files by name with their sizes, and base backups by start WAL file."""

    bucket: str
    files: dict[str, int]
    base_backups: list[str]
    newest_upload: datetime | None = None  # when the newest archive file reached the bucket

    @property
    def segments(self) -> list[str]:
        return sorted(n for n in self.files if pitr.WAL_NAME.match(n))

    @property
    def segment_size(self) -> int:
        return self.files[self.segments[0]] if self.segments else pitr.DEFAULT_SEGMENT_SIZE

    @property
    def oldest_base_backup(self) -> str | None:
        """The start WAL file of the oldest base backup (by WAL position), if any."""
        return min(self.base_backups, key=lambda s: pitr.segment_of(s, self.segment_size)[1], default=None)


def read_archive(s3: Any, bucket: str) -> BucketArchive:
    objects = _objects(s3, bucket, WAL_PREFIX)
    bases = sorted({name.split("/")[0] for name in listing(s3, bucket, BASE_PREFIX) if name.endswith(LABEL_OBJECT)})
    newest = max((at for _, at in objects.values()), default=None)
    return BucketArchive(bucket, {name: size for name, (size, _) in objects.items()}, bases, newest)


def chain_gaps(s3: Any, archive: BucketArchive, start_wal: str) -> list[str]:
    """Segments missing in the bucket from `start_wal` to its newest segment, following the newest timeline."""
    names = archive.segments
    size = archive.segment_size
    newest = max((pitr.segment_of(n, size)[0] for n in names), default=1)
    history_name = f"{newest:08X}.history"
    history = (
        pitr.parse_history(_text(s3, archive.bucket, wal_key(history_name))) if history_name in archive.files else []
    )
    return pitr.chain_gaps(names, start_wal, size, history)


def check_chain(s3: Any, bucket: str, report: Report) -> None:
    """The bucket's chain from its oldest base backup to its newest segment, and the age of its newest upload."""
    archive = read_archive(s3, bucket)
    report.measured.update(segments=len(archive.segments), base_backups=archive.base_backups)
    oldest = archive.oldest_base_backup
    if oldest is None:
        report.check("base backup", False, f"s3://{bucket} holds no base backup; upload one with `scripts.wal base`")
        return
    gaps = chain_gaps(s3, archive, oldest)
    report.measured["wal_gaps"] = gaps
    newest = archive.segments[-1] if archive.segments else "none"
    age = None
    if archive.newest_upload is not None:
        age = round((datetime.now(UTC) - archive.newest_upload).total_seconds(), 1)
    report.measured["newest_upload_age_seconds"] = age
    report.check(
        "WAL chain",
        not gaps,
        f"no gap from {oldest} (oldest base backup) to {newest} in s3://{bucket}; newest file uploaded {age} s ago"
        if not gaps
        else f"{len(gaps)} segments missing, first {gaps[0]}: a restore from s3://{bucket} cannot replay past it",
        value=len(gaps),
        limit=0,
    )


def push_base_backup(s3: Any, outputs: StackOutputs, folder: Path) -> str:
    """Upload a tar base backup (`base.tar`, `pg_wal.tar`) and its label; returns its start WAL file (its name)."""
    label = pitr.read_label(folder)
    if label is None or not (folder / BASE_FILES[0]).is_file():
        raise BadInput(f"{folder} holds no tar base backup; expected base.tar from pg_basebackup -F t")
    start_wal, _ = pitr.parse_backup_label(label)
    for file in BASE_FILES:
        if (folder / file).is_file():
            s3.upload_file(
                str(folder / file),
                outputs.wal_bucket,
                base_key(start_wal, file),
                ExtraArgs={**store.encryption_args(outputs), "Metadata": {"sha256": store.sha256_file(folder / file)}},
            )
    # The label last: a backup is listed only once all of it is in the bucket.
    s3.put_object(
        Bucket=outputs.wal_bucket,
        Key=base_key(start_wal, LABEL_OBJECT),
        Body=label.encode(),
        ContentType="text/plain",
        **store.encryption_args(outputs),
    )
    return start_wal


def _download_verified(s3: Any, bucket: str, key: str, dest: Path) -> None:
    """Download `key` to `dest` and check the bytes against the SHA-256 stored with it (removed if they differ)."""
    digest, metadata = store.download_object(s3, bucket, key, dest)
    expected = metadata.get("sha256")
    if expected and digest != expected:
        dest.unlink(missing_ok=True)
        raise WalConflict(f"s3://{bucket}/{key}: downloaded SHA-256 {digest} differs from the stored {expected}")


def materialize(s3: Any, archive: BucketArchive, folder: Path, segments: str = "all") -> tuple[Path, Path]:
    """A local copy of the bucket's archive for a restore: `<folder>/archive` (history and backup-history files,
    and the segments: "all" from the oldest base backup on, or only the "newest" few that date the newest commit)
    and `<folder>/base/<start WAL>/` with each backup's label. Returns (archive folder, base backup folder)."""
    archive_dir, base_dir = folder / "archive", folder / "base"
    archive_dir.mkdir(parents=True, exist_ok=True)
    base_dir.mkdir(exist_ok=True)
    for start in archive.base_backups:
        (base_dir / start).mkdir(exist_ok=True)
        (base_dir / start / pitr.REMOTE_LABEL).write_text(_text(s3, archive.bucket, base_key(start, LABEL_OBJECT)))
    small = [n for n in archive.files if not pitr.WAL_NAME.match(n) and not n.endswith(".partial")]
    wanted = archive.segments
    if segments == "newest":
        wanted = wanted[-8:]
    elif archive.oldest_base_backup is not None:
        first = pitr.segment_of(archive.oldest_base_backup, archive.segment_size)[1]
        wanted = [n for n in wanted if pitr.segment_of(n, archive.segment_size)[1] >= first]
    names = [n for n in [*small, *wanted] if not (archive_dir / n).is_file()]
    with ThreadPoolExecutor(max_workers=PARALLEL_DOWNLOADS, thread_name_prefix="wal-fetch") as pool:
        for future in [pool.submit(_download_verified, s3, archive.bucket, wal_key(n), archive_dir / n) for n in names]:
            future.result()
    return archive_dir, base_dir


def fetch_base_backup(s3: Any, bucket: str, folder: Path) -> None:
    """Download the tars of the base backup whose local folder `materialize` made (named by its start WAL file)."""
    for file in BASE_FILES:
        key = base_key(folder.name, file)
        try:
            _download_verified(s3, bucket, key, folder / file)
        except ClientError as exc:
            if not (store.is_missing(exc) and file != BASE_FILES[0]):
                raise
