"""The dump bucket as backups see it: upload a dump under its tier keys with SSE-KMS and SHA-256, download and check.

Object metadata carries what a restore needs to trust a dump without the source: `sha256`, `source`, `database`,
`taken-at` and `row-counts` (JSON, counted in the very snapshot pg_dump used).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from drtopo.aws import stack_client
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput
from drtopo.tiers import DumpKey, parse_key

CHUNK = 1 << 20


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


def upload(s3: Any, outputs: StackOutputs, bucket: str, keys: list[str], path: Path, metadata: dict[str, str]) -> None:
    """Upload once to the first key, then copy server-side to the others (same bytes, same metadata)."""
    first, *others = keys
    s3.upload_file(str(path), bucket, first, ExtraArgs={**encryption_args(outputs), "Metadata": metadata})
    for key in others:
        s3.copy(
            {"Bucket": bucket, "Key": first},
            bucket,
            key,
            ExtraArgs={**encryption_args(outputs), "Metadata": metadata, "MetadataDirective": "REPLACE"},
        )


@dataclass(frozen=True)
class StoredDump:
    key: str
    size: int
    metadata: dict[str, str]

    @property
    def sha256(self) -> str | None:
        return self.metadata.get("sha256")

    @property
    def row_counts(self) -> dict[str, int] | None:
        raw = self.metadata.get("row-counts")
        return None if raw is None else {str(k): int(v) for k, v in json.loads(raw).items()}


def head(s3: Any, bucket: str, key: str) -> StoredDump:
    try:
        meta = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise BadInput(
                f"dump {key!r} is not in bucket {bucket}; `python -m scripts.backup list` shows the keys"
            ) from None
        raise
    return StoredDump(key, int(meta["ContentLength"]), dict(meta.get("Metadata") or {}))


def download(s3: Any, bucket: str, key: str, dest: Path) -> str:
    """Stream the object to `dest`, returning the SHA-256 of the bytes received."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    with open(dest, "wb") as f:
        for chunk in body.iter_chunks(CHUNK):
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def list_dumps(s3: Any, bucket: str) -> list[tuple[DumpKey, str, int]]:
    """Every dump in the bucket: (parsed key, key, size). Objects of another layout are skipped."""
    found: list[tuple[DumpKey, str, int]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            parsed = parse_key(obj["Key"])
            if parsed is not None:
                found.append((parsed, obj["Key"], int(obj["Size"])))
    return found


def latest_key(s3: Any, bucket: str, database: str) -> str:
    dumps = [(k, key) for k, key, _ in list_dumps(s3, bucket) if k.database == database]
    if not dumps:
        raise BadInput(f"bucket {bucket} holds no dump of database {database!r}; run `python -m scripts.backup run`")
    # Every tier holds the same bytes; prefer the daily copy of the newest dump.
    newest = max(dumps, key=lambda d: (d[0].taken_at, d[0].tier == "daily"))
    return newest[1]
