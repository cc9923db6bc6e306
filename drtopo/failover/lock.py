"""One failover at a time: a lock object that operators on different machines all see.

`promote` and `failback` take the lock before their first step and release it at the end; a corruption cutover
takes the lock of both stacks of the pair (`held`), so neither a promote nor a failback runs beside it. It is an S3
object in the target stack's configuration bucket (the region the run makes primary, which must be up for the run
at all), written with `If-None-Match: *`, so of two concurrent writers exactly one succeeds (S3 conditional writes;
the emulator models them). The object records who holds it and since when; a refused run names both. A lock left
by a run that crashed on this very machine (its process is gone) is taken over; any other lock is broken only on
request (`--break-lock`), after the operator has checked that its owner is really gone.

The configuration buckets replicate everything into each other (components/storage.py), and S3 replication is
asynchronous: a replica arrives seconds to minutes (RTC: 99.99% within 15) after its source, delete markers included,
with no promise of how it lands among versions written in the destination meanwhile. One key shared by both
buckets would take the peer's lock objects: a lock taken and released in prod's bucket (a failback) replicates its
object and then its delete marker into dr's bucket, where a promote may hold the lock by then; the late delete
marker would make dr's lock look free while that promote runs (a second one could take it), the late object a
holder that never held it. So the key names the stack whose bucket holds it (`lock_key`): in each bucket the lock
key is written only by the runs that make that stack primary, and the replica of the peer's lock lands under the
peer's key, which no run reads there. (The lease does not live in these buckets at all: drtopo/fencing/store.py.)
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from drtopo.backup.store import encryption_args, s3_client
from drtopo.outputs import StackOutputs
from drtopo.report import Unsafe

LOCK_PREFIX = "locks/"


def lock_key(stack: str) -> str:
    """The lock object of runs that make `stack` primary, in `stack`'s configuration bucket."""
    return f"{LOCK_PREFIX}failover-{stack}.json"


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    operation: str
    stack: str
    since: str

    @classmethod
    def me(cls, operation: str, stack: str) -> Owner:
        return cls(socket.gethostname(), os.getpid(), operation, stack, datetime.now(UTC).isoformat(timespec="seconds"))

    def age_seconds(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - datetime.fromisoformat(self.since)).total_seconds()

    def is_dead_here(self) -> bool:
        """True when the owner ran on this machine and its process no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        return f"{self.operation} of {self.stack} by pid {self.pid} on {self.host}, {self.age_seconds():.0f} s ago"


class FailoverLock:
    """The lock of one stack pair; `acquire` or raise Unsafe naming the holder, `release` when done."""

    def __init__(self, outputs: StackOutputs, client: Any | None = None) -> None:
        self.outputs = outputs
        self.bucket = outputs.config_bucket
        self.key = lock_key(outputs.stack)
        self.s3 = client or s3_client(outputs)
        self.held: Owner | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def holder(self) -> Owner | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return Owner(**json.loads(body))

    def _put(self, owner: Owner) -> bool:
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=json.dumps(owner.__dict__).encode(),
                IfNoneMatch="*",
                **encryption_args(self.outputs),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def acquire(self, operation: str, stack: str, break_lock: bool = False) -> Owner:
        """Take the lock, or raise Unsafe naming its holder (or why the lock store cannot be reached)."""
        try:
            return self._acquire(operation, stack, break_lock)
        except (ClientError, BotoCoreError) as exc:
            raise Unsafe(f"cannot take the failover lock {self.where}: {exc}") from None

    def _acquire(self, operation: str, stack: str, break_lock: bool) -> Owner:
        me = Owner.me(operation, stack)
        if self._put(me):
            self.held = me
            return me
        current = self.holder()
        if current is not None and not (break_lock or current.is_dead_here()):
            raise Unsafe(
                f"another failover holds the lock {self.where}: {current.describe()}; wait for it, or if that run is "
                "gone for good, rerun with --break-lock"
            )
        if current is not None:
            # Only a holder judged gone (or broken on request) is removed: a lock that vanished between the refused
            # write and the read was released, or is a winner's not yet visible, and deleting blindly here could
            # remove that winner's fresh lock; the conditional write below decides.
            self.s3.delete_object(Bucket=self.bucket, Key=self.key)
        if not self._put(me):
            raise Unsafe(f"lost the race for the lock {self.where} to {self.holder() or 'another run'}")
        self.held = me
        return me

    def release(self) -> None:
        """Remove the lock if this run still holds it."""
        if self.held is None:
            return
        current = self.holder()
        if current == self.held:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key)
        self.held = None


@contextmanager
def held(
    stacks: Sequence[StackOutputs], operation: str, stack: str, break_lock: bool = False
) -> Iterator[list[FailoverLock]]:
    """The lock of each of `stacks` in turn for `operation` of `stack` (Unsafe naming the holder as soon as one is
    held elsewhere, after releasing those taken; with `break_lock`, a holder elsewhere is taken over as `acquire`
    does), all released at the end, also on failure."""
    locks: list[FailoverLock] = []
    try:
        for outputs in stacks:
            lock = FailoverLock(outputs)
            lock.acquire(operation, stack, break_lock)
            locks.append(lock)
        yield locks
    finally:
        for lock in reversed(locks):
            try:
                lock.release()
            except (ClientError, BotoCoreError):
                log.exception("releasing the lock %s", lock.where)
