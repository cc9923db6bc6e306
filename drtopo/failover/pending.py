"""A fence owed to an old primary: recorded when a promotion could not reach it, paid the moment it answers.

After an unplanned promotion the old primary is down, so nothing can fence it; if it comes back writable it takes
writes, Route53 may still send it traffic, and a later pg_rewind silently discards them. So the promotion records
the debt as an object in the promoted stack's configuration bucket (the surviving region, where every operator's
validate and failback look), and `settle` fences the old primary first thing when it is reachable again, before
anything else runs. The record goes once the fence is proven (a fresh session's write refused).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from drtopo.backup.store import encryption_args, s3_client
from drtopo.database import database_for
from drtopo.database.platform import FenceError
from drtopo.outputs import StackOutputs
from drtopo.report import Report


def key(old_primary: str) -> str:
    return f"fence-pending/{old_primary}.json"


def record(promoted: StackOutputs, old_primary: StackOutputs) -> str:
    """Note in the promoted stack's bucket that `old_primary` must be fenced; returns where."""
    body = {"stack": old_primary.stack, "promoted": promoted.stack, "since": datetime.now(UTC).isoformat()}
    s3_client(promoted).put_object(
        Bucket=promoted.config_bucket,
        Key=key(old_primary.stack),
        Body=json.dumps(body).encode(),
        **encryption_args(promoted),
    )
    return f"s3://{promoted.config_bucket}/{key(old_primary.stack)}"


def owed(promoted: StackOutputs, old_primary: StackOutputs) -> dict[str, Any] | None:
    """The record of a fence `promoted`'s promotion owes `old_primary`, if any."""
    try:
        body = s3_client(promoted).get_object(Bucket=promoted.config_bucket, Key=key(old_primary.stack))["Body"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body.read())


def clear(promoted: StackOutputs, old_primary: StackOutputs) -> None:
    """The debt is gone without a fence: `old_primary` has been rebuilt as a replica (it cannot take writes)."""
    s3_client(promoted).delete_object(Bucket=promoted.config_bucket, Key=key(old_primary.stack))


def settle(report: Report, promoted: StackOutputs, old_primary: StackOutputs, rebuilt_next: bool = False) -> None:
    """`fence.pending`: fence `old_primary` if a fence is owed to it and it answers (a skip while it does not;
    `rebuilt_next`: a failback, which turns it into a replica before anything else)."""
    try:
        debt = owed(promoted, old_primary)
    except (ClientError, BotoCoreError) as exc:
        report.check("fence.pending", False, f"cannot read the fence record in {promoted.config_bucket}: {exc}")
        return
    if debt is None:
        return
    name = f"{old_primary.stack} (old primary since {debt['promoted']} was promoted at {debt['since']})"
    old = database_for(old_primary)
    if not old.reachable():
        # Not a failure of the recovery (the old region is down), but nothing was checked: a skip, never a pass.
        then = "it is rebuilt as a replica" if rebuilt_next else "it is fenced the moment it answers"
        report.skip("fence.pending", f"{name} is owed a fence and does not answer: {then}")
        return
    try:
        done = old.fence()
    except FenceError as exc:
        report.check("fence.pending", False, f"{name} answers and could not be fenced: {exc}")
        return
    clear(promoted, old_primary)
    report.check("fence.pending", True, f"{name} fenced now: {done['method']}; {done['proof']}")
