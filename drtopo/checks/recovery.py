"""Checks that tell a recovered stack from one that is not: the stack is in the role expected of it, its database
accepts a write, and the failover record answers the region it should.

After a failover the stack to validate is the one promote made primary: `validate` expects that role by default, so
the standby validated by mistake (or a promotion that never happened) fails, naming the stack. The role is the role
marker's in the stack's own region (drtopo/failover/marker.py, written by promote and failback) when there is one,
else `drtopo:role`. The write probe inserts a row into the exceptions table inside a transaction that is rolled back:
a server in recovery, read-only by default or refusing the service's table fails it, and nothing is left behind (the
row names its id, so no sequence value is taken either).
"""

from __future__ import annotations

import uuid

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from drtopo.checks.db import EXCEPTIONS_TABLE
from drtopo.checks.service import PROBE_PREFIX
from drtopo.errors import one_line
from drtopo.failover import dns
from drtopo.failover import marker as role_marker
from drtopo.outputs import StackOutputs
from drtopo.report import Report
from drtopo.settings import Role, Settings, stack_file

ROLE, WRITE_PROBE, RECORD = "stack.role", "db.write_probe", "service.record"
# The probe row's id: never one the service's sequence hands out, so the insert takes no sequence value.
PROBE_ID = -1
PROBE_TIMEOUT_MS = 5000


def live_role(settings: Settings, outputs: StackOutputs) -> tuple[Role, str]:
    """The stack's role and where it was read: the role marker in its own region, else its settings."""
    name = role_marker.marker_name(settings.stack, settings.peer_stack)
    configured = f"drtopo:role in {stack_file(settings.stack).name}"
    try:
        found = role_marker.read(outputs.region, name)
    except (BotoCoreError, ClientError, role_marker.MarkerError) as exc:
        return settings.role, f"{configured}; the role marker in {outputs.region} is unreadable: {one_line(exc)}"
    role = found.role_of(settings.stack) if found else None
    if found is None or role is None:
        return settings.role, f"{configured}; no role marker in {outputs.region}"
    return role, f"role marker {found.describe()}"


def role_check(report: Report, settings: Settings, outputs: StackOutputs, expect: Role) -> bool:
    """`stack.role`: the stack is `expect` (primary after a recovery), as its live role says."""
    role, source = live_role(settings, outputs)
    return judge_role(report, settings.stack, role, source, expect)


def judge_role(report: Report, stack: str, role: Role, source: str, expect: Role) -> bool:
    """`stack.role` from the role found and where it was read (pure)."""
    if role is expect:
        report.check(ROLE, True, f"{stack} is {role.value} ({source})", value=role.value, limit=expect.value)
        return True
    hint = (
        "post-recovery validation is of the stack promote made primary; --expect standby checks a standby"
        if expect is Role.PRIMARY
        else "--expect primary checks the primary"
    )
    detail = f"{stack} is not {expect.value}: it is {role.value} ({source}); {hint}"
    report.check(ROLE, False, detail, value=role.value, limit=expect.value)
    return False


def write_probe(report: Report, conn: psycopg.Connection) -> None:
    """`db.write_probe`: a row inserted into the exceptions table inside a transaction that is rolled back."""
    probe = f"drtopo-write-probe-{uuid.uuid4()}"
    insert = sql.SQL(
        "INSERT INTO {} (id, transaction_id, interface_type, exception_reason, operation) "
        "VALUES (%s, %s, 'DRTOPO', 'write probe', 'VALIDATE')"
    ).format(sql.Identifier(EXCEPTIONS_TABLE))
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(PROBE_TIMEOUT_MS)))
            conn.execute(insert, (PROBE_ID, probe))
    except psycopg.Error as exc:
        report.check(WRITE_PROBE, False, f"{EXCEPTIONS_TABLE} refused a write: {one_line(exc)}")
        return
    report.check(WRITE_PROBE, True, f"a row inserted into {EXCEPTIONS_TABLE} and rolled back ({probe})")


def remove_probe_row(conn: psycopg.Connection, row_id: int, transaction_id: str) -> int:
    """Delete the service write probe's row (drtopo/checks/service.py) by its id and probe transactionId: never an
    application's row. Returns the rows deleted (1, or 0 when it is gone already)."""
    if not transaction_id.startswith(PROBE_PREFIX):
        raise ValueError(f"transactionId {transaction_id!r} is not a probe's; expected one starting {PROBE_PREFIX!r}")
    deleted = conn.execute(
        sql.SQL("DELETE FROM {} WHERE id = %s AND transaction_id = %s").format(sql.Identifier(EXCEPTIONS_TABLE)),
        (row_id, transaction_id),
    )
    return deleted.rowcount


def record_check(report: Report, outputs: StackOutputs, expect: Role) -> None:
    """`service.record`: the failover record answers this stack's region when it is expected primary, the peer's
    when standby. Route53's API not answering (its control plane is us-east-1's) is a skip, never a pass."""
    try:
        routing = dns.current(outputs)
    except (BotoCoreError, ClientError, dns.RecordError) as exc:
        report.skip(RECORD, f"{outputs.record_name} not read: {one_line(exc)}")
        return
    judge_record(report, routing, outputs.set_identifier, f"{outputs.record_name} ({outputs.service_url})", expect)


def judge_record(report: Report, routing: dict[str, str], own: str, record: str, expect: Role) -> None:
    """`service.record` from the failover pair as Route53 answers it (`{SetIdentifier: PRIMARY|SECONDARY}`) (pure)."""
    answered = next((set_id for set_id, failover in routing.items() if failover == "PRIMARY"), None)
    ok = answered == own if expect is Role.PRIMARY else answered not in (None, own)
    where = "this region" if answered == own else "the peer region" if answered else "no region"
    want = "this region" if expect is Role.PRIMARY else "the peer region"
    detail = f"{record} answers {answered or 'nothing'} ({where}); expected {want}"
    report.check(RECORD, ok, detail, value=answered, limit=own if expect is Role.PRIMARY else f"not {own}")
