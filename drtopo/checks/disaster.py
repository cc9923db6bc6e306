"""The disaster time `validate` measures the RPO from when `--since` is not given: when the last promote of the stack
says its standby last heard from the primary.

Promote's guard step journals the replica lag it judged; with the old primary unreachable that lag is a bound whose
`last_contact` is the moment the replication stream from the primary ended, read from the standby's own server log
(drtopo/database/loss_bound.py). The journal is in the promoted stack's configuration bucket
(`journals/promote-<stack>.json` while open, `journals/promote-<stack>.<closed at>.json` once finished); the newest
one counts. A promote whose old primary answered (a planned switchover) lost no region: it gives no disaster time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from drtopo.backup.store import s3_client
from drtopo.failover.journal import JOURNAL_PREFIX
from drtopo.failover.plan import Step
from drtopo.outputs import StackOutputs


@dataclass(frozen=True)
class DisasterTime:
    at: datetime | None
    source: str  # where it was read, or why there is none


def last_contact(journal: dict[str, Any]) -> datetime | None:
    """The primary's last contact that a promote journal's guard step recorded (None: the primary answered) (pure)."""
    guard = (journal.get("steps") or {}).get(Step.GUARD) or {}
    contact = ((guard.get("result") or {}).get("lag") or {}).get("last_contact")
    if not contact:
        return None
    moment = datetime.fromisoformat(str(contact))
    return moment if moment.tzinfo is not None else None


def is_promote_journal(key: str, stack: str) -> bool:
    """The open promote journal of `stack`, or a closed one under its closing time; never the journal of another
    stack whose name starts alike (`dr.2`) (pure)."""
    prefix = re.escape(f"{JOURNAL_PREFIX}promote-{stack}.")
    return re.match(rf"^{prefix}(\d{{8}}T\d{{6}}(\.\d+)?([+-]\d{{4}}|Z)?\.)?json$", key) is not None


def newest_promote_journal(outputs: StackOutputs) -> tuple[str, dict[str, Any]] | None:
    """(s3 URL, document) of the newest promote journal of the stack, open or closed; None when there is none."""
    s3 = s3_client(outputs)
    prefix = f"{JOURNAL_PREFIX}promote-{outputs.stack}."
    listed = s3.list_objects_v2(Bucket=outputs.config_bucket, Prefix=prefix).get("Contents") or []
    listed = [o for o in listed if is_promote_journal(o["Key"], outputs.stack)]
    if not listed:
        return None
    newest = max(listed, key=lambda o: o["LastModified"])
    body = s3.get_object(Bucket=outputs.config_bucket, Key=newest["Key"])["Body"].read()
    return f"s3://{outputs.config_bucket}/{newest['Key']}", json.loads(body)


def disaster_time(outputs: StackOutputs) -> DisasterTime:
    """When the last promote's journal says the primary was last heard from, and where that was read."""
    try:
        found = newest_promote_journal(outputs)
    except (BotoCoreError, ClientError, ValueError) as exc:
        return DisasterTime(None, f"no promote journal read from {outputs.config_bucket}: {exc}")
    if found is None:
        return DisasterTime(None, f"no promote journal of {outputs.stack} in {outputs.config_bucket}")
    where, journal = found
    try:
        at = last_contact(journal)
    except ValueError as exc:
        return DisasterTime(None, f"{where}: the last contact is not a time ({exc})")
    if at is None:
        return DisasterTime(None, f"{where}: the primary answered that promote (no region was lost)")
    return DisasterTime(at, f"{where}: the standby last heard from the primary")
