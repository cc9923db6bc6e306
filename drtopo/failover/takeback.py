"""Nothing an old primary took is lost: its writes after the fork are found and taken back before it is rebuilt.

A promotion records where the pair forked (`record_fork`: the standby's fork point, drtopo/database/diverged.py) in
the promoted stack's configuration bucket, beside the fence it may owe. Before a rebuild turns the old primary into
a replica (pg_rewind, a base backup, an RDS replica), `take_back` compares it by key with the promoted database,
re-applies what the old primary wrote after the fork and lists what it cannot re-apply without overwriting (rows
changed on both sides, deletes), with the old primary's rows, in the configuration bucket and the state folder. The
rebuild goes on only when nothing is left listed or the operator acknowledged the list (`failback
--acknowledge-diverged`); `validate` reports the same search without writing anything to either database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from drtopo.backup.store import encryption_args, s3_client
from drtopo.database import Database
from drtopo.database.compare import CompareError
from drtopo.database.connect import connect
from drtopo.database.diverged import Diverged, Fork, find, reapply
from drtopo.errors import one_line
from drtopo.outputs import StackOutputs
from drtopo.report import Report

CHECK = "diverged"


def fork_key(old_primary: str) -> str:
    return f"fork/{old_primary}.json"


def found_key(old_primary: str, stamp: str) -> str:
    return f"diverged/{old_primary}/{stamp}.json"


def record_fork(promoted: StackOutputs, old_primary: StackOutputs, fork: Fork) -> str:
    """Note in the promoted stack's bucket where it forked from `old_primary`; returns where."""
    body = {"stack": old_primary.stack, "promoted": promoted.stack, **fork.to_dict()}
    s3_client(promoted).put_object(
        Bucket=promoted.config_bucket,
        Key=fork_key(old_primary.stack),
        Body=json.dumps(body).encode(),
        **encryption_args(promoted),
    )
    return f"s3://{promoted.config_bucket}/{fork_key(old_primary.stack)}"


def read_fork(promoted: StackOutputs, old_primary: StackOutputs) -> Fork | None:
    try:
        body = s3_client(promoted).get_object(Bucket=promoted.config_bucket, Key=fork_key(old_primary.stack))["Body"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return Fork.from_dict(json.loads(body.read()))


def clear_fork(promoted: StackOutputs, old_primary: StackOutputs) -> None:
    """`old_primary` is a replica of `promoted` now: it has no writes of its own left to find."""
    s3_client(promoted).delete_object(Bucket=promoted.config_bucket, Key=fork_key(old_primary.stack))


def keep(promoted: StackOutputs, old_primary: StackOutputs, document: dict[str, Any], state_dir: Path) -> list[str]:
    """The list, in the state folder and (when `document` holds writes) in the promoted stack's bucket; returns
    where it is."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    text = json.dumps(document, indent=2, default=str)
    local = state_dir / "diverged" / f"{old_primary.stack}-{stamp}.json"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(text)
    local.chmod(0o600)  # the service's rows: its owner's only
    where = [str(local)]
    if document.get("apply"):
        key = found_key(old_primary.stack, stamp)
        s3_client(promoted).put_object(
            Bucket=promoted.config_bucket, Key=key, Body=text.encode(), **encryption_args(promoted)
        )
        where.append(f"s3://{promoted.config_bucket}/{key}")
    return where


@dataclass
class TakeBack:
    """What `take_back` did: `looked` False when the old primary could not be read (`reason` says why)."""

    looked: bool
    diverged: Diverged | None = None
    where: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def left(self) -> int:
        """Rows that a rebuild now would discard from the database: listed, not re-applied."""
        return len(self.diverged.listed) if self.diverged else 0

    def as_dict(self) -> dict[str, Any]:
        d = self.diverged
        return {
            "looked": self.looked,
            "reason": self.reason or None,
            "fork": d.fork.to_dict() if d and d.fork else None,
            "found": len(d.found) if d else None,
            "reapplied": len(d.reapplied) if d else None,
            "listed": self.left if d else None,
            "counts": d.counts() if d else {},
            "where": self.where,
        }


def take_back(
    report: Report,
    promoted: Database,
    old: Database,
    state_dir: Path,
    *,
    apply: bool,
    acknowledged: bool = False,
    name: str = CHECK,
) -> TakeBack:
    """Find what `old` (an old primary) wrote after the fork that `promoted` lacks; with `apply`, re-apply it
    (a server that is down with its files here is started read-only to be read first). Records check `name` and
    `measured[name]`; `acknowledged`: the operator accepts the listed rows (the check says so)."""
    p, o = promoted.outputs, old.outputs
    answers = old.open_for_reading() if apply else old.reachable()
    if not answers:
        took = TakeBack(False, reason=f"{o.stack}'s database does not answer: its writes after the fork not looked for")
        report.measured[name] = took.as_dict()
        if apply:
            report.check(name, acknowledged, took.reason + ("; acknowledged" if acknowledged else ""))
        else:  # a search that writes nothing: the rebuild itself starts a stopped server read-only to look
            report.skip(name, took.reason)
        return took
    try:
        fork = read_fork(p, o)
    except (ClientError, BotoCoreError) as exc:
        fork = None
        report.check(f"{name}.fork", False, f"fork record in {p.config_bucket} unreadable: {one_line(exc)}")
    try:
        with connect(o) as old_conn, connect(p) as new_conn:
            diverged, shapes = find(old_conn, new_conn, fork)
            if apply and diverged.found:
                reapply(old_conn, new_conn, diverged, shapes)
    except (psycopg.Error, CompareError, ValueError) as exc:
        took = TakeBack(False, reason=f"comparing {o.stack} with {p.stack} failed: {one_line(exc)}")
        report.measured[name] = took.as_dict()
        report.check(name, False, took.reason)
        return took
    document = {
        "old_primary": o.stack,
        "promoted": p.stack,
        "at": datetime.now(UTC).isoformat(),
        "apply": apply,
        **diverged.to_dict(),
    }
    took = TakeBack(True, diverged)
    if diverged.found:
        try:
            took.where = keep(p, o, document, state_dir)
        except (OSError, ClientError, BotoCoreError) as exc:
            report.check(f"{name}.list", False, f"the list of found rows not kept: {one_line(exc)}")
    report.measured[name] = took.as_dict()
    fork_said = "" if fork else "; no fork record: every changed row is a conflict"
    where = f"; list: {', '.join(took.where)}" if took.where else ""
    if took.left and apply:
        then = "acknowledged (--acknowledge-diverged)" if acknowledged else "not re-applied, never overwritten"
    elif took.left:
        then = "`failback` re-applies them before it rebuilds the old primary"
    else:
        then = ""
    detail = f"{o.stack} vs {p.stack}: {diverged.summary()}{fork_said}{where}" + (f"; {then}" if then else "")
    report.check(name, not took.left or acknowledged, detail, value=took.left, limit=0)
    return took
