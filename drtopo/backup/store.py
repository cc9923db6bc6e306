"""The dump bucket as backups see it: upload a dump under its tier keys with SSE-KMS and SHA-256, download and check.

Object metadata carries `sha256`, `source`, `database` and `taken-at`. The row counts per table (counted in the very
snapshot pg_dump used) go into a manifest object beside each dump, `<key>.manifest.json`: user metadata is limited
to 2 KB in all, which a database with many tables outgrows. A manifest is a few hundred bytes, and S3 lifecycle rules
do not transition objects smaller than 128 KB by default (`TransitionDefaultMinimumObjectSize`
`all_storage_classes_128K`, the default since September 2024), so it stays readable while its dump goes to
GLACIER or DEEP_ARCHIVE.

Archived dumps (GLACIER, DEEP_ARCHIVE) cannot be read until a RestoreObject request has made a temporary copy; the
`Restore` header says where that stands (`ongoing-request="true"`, or `"false"` with the copy's expiry date).
Retrieval times per class and tier are AWS's documented typical times ("Understanding archive retrieval options",
S3 User Guide): GLACIER Expedited 1-5 min, Standard 3-5 h, Bulk 5-12 h; DEEP_ARCHIVE Standard within 12 h, Bulk
within 48 h, no Expedited.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from drtopo.aws import stack_client
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput
from drtopo.tiers import DumpKey, parse_key

CHUNK = 1 << 20
MANIFEST_SUFFIX = ".manifest.json"
ARCHIVED = ("GLACIER", "DEEP_ARCHIVE")
RETRIEVAL_TIERS = ("Expedited", "Standard", "Bulk")
# (storage class, retrieval tier) -> typical (shortest, longest) seconds until the restored copy is readable.
RETRIEVAL_SECONDS: dict[tuple[str, str], tuple[int, int]] = {
    ("GLACIER", "Expedited"): (60, 5 * 60),
    ("GLACIER", "Standard"): (3 * 3600, 5 * 3600),
    ("GLACIER", "Bulk"): (5 * 3600, 12 * 3600),
    ("DEEP_ARCHIVE", "Standard"): (0, 12 * 3600),
    ("DEEP_ARCHIVE", "Bulk"): (0, 48 * 3600),
}


def manifest_key(key: str) -> str:
    return key + MANIFEST_SUFFIX


def retrieval_estimate(storage_class: str, tier: str) -> tuple[int, int]:
    """Typical (shortest, longest) seconds a restore of `storage_class` with `tier` takes; BadInput if not offered."""
    if (storage_class, tier) not in RETRIEVAL_SECONDS:
        offered = [t for c, t in RETRIEVAL_SECONDS if c == storage_class]
        raise BadInput(f"--tier {tier} is not offered for {storage_class}; expected one of {', '.join(offered)}")
    return RETRIEVAL_SECONDS[(storage_class, tier)]


def restore_state(storage_class: str, restore_header: str | None) -> str:
    """`readable` (not archived), `archived` (no restore asked), `restoring`, or `restored until <date>` (pure)."""
    if storage_class not in ARCHIVED:
        return "readable"
    if not restore_header:
        return "archived"
    if 'ongoing-request="true"' in restore_header:
        return "restoring"
    expiry = re.search(r'expiry-date="([^"]+)"', restore_header)
    return f"restored until {expiry.group(1)}" if expiry else "restored"


def readable_now(storage_class: str, restore_header: str | None) -> bool:
    state = restore_state(storage_class, restore_header)
    return state == "readable" or state.startswith("restored")


def typical_time(storage_class: str, tier: str) -> str:
    """`typically 3 h-5 h` or `typically within 12 h` (pure)."""
    low, high = retrieval_estimate(storage_class, tier)
    if low == 0:
        return f"typically within {describe_seconds(high)}"
    return f"typically {describe_seconds(low)}-{describe_seconds(high)}"


def describe_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def s3_client(outputs: StackOutputs) -> Any:
    return stack_client("s3", outputs)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def encryption_args(outputs: StackOutputs) -> dict[str, str]:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": outputs.kms_key_arn}


def upload(
    s3: Any,
    outputs: StackOutputs,
    bucket: str,
    keys: list[str],
    path: Path,
    metadata: dict[str, str],
    manifest: dict[str, Any],
) -> None:
    """Upload once to the first key, then copy server-side to the others (same bytes, same metadata); the manifest
    goes beside each copy."""
    first, *others = keys
    s3.upload_file(str(path), bucket, first, ExtraArgs={**encryption_args(outputs), "Metadata": metadata})
    for key in others:
        s3.copy(
            {"Bucket": bucket, "Key": first},
            bucket,
            key,
            ExtraArgs={**encryption_args(outputs), "Metadata": metadata, "MetadataDirective": "REPLACE"},
        )
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    for key in keys:
        s3.put_object(
            Bucket=bucket,
            Key=manifest_key(key),
            Body=body,
            ContentType="application/json",
            **encryption_args(outputs),
        )


@dataclass(frozen=True)
class StoredDump:
    key: str
    size: int
    metadata: dict[str, str]
    storage_class: str = "STANDARD"
    restore: str | None = None  # the Restore header of an archived object
    manifest: dict[str, Any] | None = None

    @property
    def sha256(self) -> str | None:
        return self.metadata.get("sha256")

    @property
    def row_counts(self) -> dict[str, int] | None:
        """From the manifest; dumps written before manifests carry them in metadata."""
        if self.manifest is not None and "row_counts" in self.manifest:
            return {str(k): int(v) for k, v in self.manifest["row_counts"].items()}
        raw = self.metadata.get("row-counts")
        return None if raw is None else {str(k): int(v) for k, v in json.loads(raw).items()}

    @property
    def state(self) -> str:
        return restore_state(self.storage_class, self.restore)

    @property
    def readable(self) -> bool:
        return readable_now(self.storage_class, self.restore)


def is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def read_manifest(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read()
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise
    return dict(json.loads(body))


def head(s3: Any, bucket: str, key: str, with_manifest: bool = True) -> StoredDump:
    try:
        meta = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            raise BadInput(
                f"dump {key!r} is not in bucket {bucket}; `python -m scripts.backup list` shows the keys"
            ) from None
        raise
    return StoredDump(
        key,
        int(meta["ContentLength"]),
        dict(meta.get("Metadata") or {}),
        meta.get("StorageClass") or "STANDARD",
        meta.get("Restore"),
        read_manifest(s3, bucket, key) if with_manifest else None,
    )


def request_restore(s3: Any, bucket: str, key: str, tier: str, days: int) -> str:
    """Ask S3 for a temporary readable copy of an archived dump; a restore already under way is not an error."""
    try:
        s3.restore_object(Bucket=bucket, Key=key, RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}})
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "RestoreAlreadyInProgress":
            return "a restore was already under way"
        raise
    return f"restore requested ({tier}, copy kept {days} days)"


def wait_readable(
    s3: Any, bucket: str, key: str, timeout: float, poll: float, progress: Callable[[float, str], None]
) -> StoredDump | None:
    """Poll HeadObject until the restored copy is readable (returned) or `timeout` passes (None)."""
    start = time.monotonic()
    while True:
        stored = head(s3, bucket, key)
        waited = time.monotonic() - start
        if stored.readable:
            return stored
        if waited >= timeout:
            return None
        progress(waited, stored.state)
        time.sleep(min(poll, max(0.0, timeout - waited)))


def download(s3: Any, bucket: str, key: str, dest: Path) -> str:
    """Stream the object to `dest`, returning the SHA-256 of the bytes received."""
    return download_object(s3, bucket, key, dest)[0]


def download_object(s3: Any, bucket: str, key: str, dest: Path) -> tuple[str, dict[str, str]]:
    """Stream the object to `dest` with one GetObject: the SHA-256 of the bytes received and the object's metadata."""
    response = s3.get_object(Bucket=bucket, Key=key)
    digest = hashlib.sha256()
    with open(dest, "wb") as f:
        for chunk in response["Body"].iter_chunks(CHUNK):
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest(), dict(response.get("Metadata", {}))


def list_dumps(s3: Any, bucket: str) -> list[tuple[DumpKey, str, int, str]]:
    """Every dump in the bucket: (parsed key, key, size, storage class). Objects of another layout (manifests
    included) are skipped."""
    found: list[tuple[DumpKey, str, int, str]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            parsed = parse_key(obj["Key"])
            if parsed is not None:
                found.append((parsed, obj["Key"], int(obj["Size"]), obj.get("StorageClass") or "STANDARD"))
    return found


def latest_key(s3: Any, bucket: str, database: str) -> str:
    dumps = [(k, key) for k, key, _, _ in list_dumps(s3, bucket) if k.database == database]
    if not dumps:
        raise BadInput(f"bucket {bucket} holds no dump of database {database!r}; run `python -m scripts.backup run`")
    # Every tier holds the same bytes; prefer the daily copy of the newest dump.
    newest = max(dumps, key=lambda d: (d[0].taken_at, d[0].tier == "daily"))
    return newest[1]
