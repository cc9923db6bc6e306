"""The guard's fence of its own database, in seconds and without superuser (RDS allows both statements):
`ALTER DATABASE <db> SET default_transaction_read_only = on` for every new session, then every client session of
that database but the guard's own is terminated, so none keeps writing in a transaction that began writable. A
superuser's session is terminated only when the guard is a superuser itself (PostgreSQL refuses it otherwise).

It is the first stage: a session may still `SET default_transaction_read_only = off` on purpose; the platform's
durable fence (`Database.fence`: the RDS read-only parameter group and reboot, ALTER SYSTEM on self-managed) is the
second, paid by promote, validate or failback (drtopo/failover/pending.py).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from drtopo.database.connect import connect
from drtopo.database.platform import FenceError, lift_database_read_only, prove_read_only
from drtopo.errors import one_line
from drtopo.outputs import StackOutputs

TERMINATE = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))
FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
  AND (NOT r.rolsuper OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))
"""


def is_fenced(outputs: StackOutputs) -> bool:
    """Whether a new session of the database starts read-only: this fence, the platform's, or a replica's recovery
    (an old primary rebuilt as a replica takes no writes: its guard has nothing left to fence)."""
    with connect(outputs) as conn:
        return conn.execute("SHOW transaction_read_only").fetchone()[0] == "on"


def fence_sessions(outputs: StackOutputs) -> dict[str, Any]:
    """Make the stack's database refuse writes now; returns what was done and the refused probe write. A replica
    (in recovery) is left alone: it refuses writes already, and its sessions (a failback's catch-up) are not the
    guard's to end."""
    try:
        with connect(outputs) as conn:
            if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return {
                    "method": "in recovery: a replica takes no writes",
                    "sessions_terminated": 0,
                    "proof": "replica",
                }
            method = f"ALTER DATABASE {outputs.db_name} SET default_transaction_read_only = on + terminated sessions"
            try:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                        sql.Identifier(outputs.db_name)
                    )
                )
            except psycopg.errors.ReadOnlySqlTransaction:
                # Already fenced by the platform (promote's or failback's fence): new sessions start read-only, and
                # that fence ended the sessions that began writable. Its run's own sessions (the drain) are left.
                method = "already read-only (the platform's fence, which ended the writable sessions)"
                terminated = 0
            else:
                terminated = conn.execute(TERMINATE).fetchone()[0]
        proof = prove_read_only(outputs)
    except psycopg.Error as exc:
        raise FenceError(
            f"cannot fence {outputs.db_name} on {outputs.db_address}:{outputs.db_port}: {one_line(exc)}"
        ) from None
    return {
        "method": method,
        "sessions_terminated": terminated,
        "proof": proof,
    }


def lift_fence(outputs: StackOutputs) -> None:
    """Undo `fence_sessions` on a database that is (again) the lease holder's."""
    with connect(outputs) as conn:
        lift_database_read_only(conn, outputs.db_name)
