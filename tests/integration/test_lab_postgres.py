"""The lab's PostgreSQL pair is real: streaming replication, WAL archive, base backup, crash and restart."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from drtopo.database.connect import connect
from drtopo.outputs import load_outputs
from drtopo.settings import stack_file
from lab.core import Lab

pytestmark = pytest.mark.lab


def insert(conn: psycopg.Connection, txid: str) -> None:
    conn.execute(
        "INSERT INTO interface_exceptions (transaction_id, interface_type, exception_reason, operation)"
        " VALUES (%s, 'ORDER', 'rejected', 'CREATE')",
        (txid,),
    )


def wait_for_row(conn: psycopg.Connection, txid: str, timeout: float = 10) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if conn.execute("SELECT 1 FROM interface_exceptions WHERE transaction_id = %s", (txid,)).fetchone():
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"row {txid} did not reach the standby within {timeout} s")


def test_write_on_primary_is_visible_on_standby(lab: Lab) -> None:
    prod, dr = (load_outputs(lab.region(s).outputs_path, s) for s in ("prod", "dr"))
    txid = f"repl-{uuid.uuid4()}"
    with connect(prod) as primary, connect(dr) as standby:
        assert primary.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        insert(primary, txid)
        wait_for_row(standby, txid)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            insert(standby, f"refused-{uuid.uuid4()}")


def test_status_reports_roles_and_lag(lab: Lab) -> None:
    servers = lab.status()["servers"]
    assert servers["postgres-prod"]["role"] == "primary"
    assert servers["postgres-dr"]["role"] == "standby"
    assert servers["postgres-dr"]["streaming"] is True
    assert servers["postgres-dr"]["lag_bytes"] is not None and servers["postgres-dr"]["lag_bytes"] >= 0


def test_primary_archives_wal_and_has_a_base_backup(lab: Lab) -> None:
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    archive = lab.pg.archive_dir
    with connect(outputs) as conn:
        segment = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 15
        while not (archive / segment).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert (archive / segment).exists(), f"{segment} was not archived into {archive}"
    assert {"base.tar", "pg_wal.tar", "backup_manifest"} <= {p.name for p in lab.pg.base_backup_dir.iterdir()}
    assert outputs.self_managed is not None and outputs.self_managed.archive_dir == str(archive)


def test_checksums_password_and_schema(lab: Lab) -> None:
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    with connect(outputs) as conn:
        assert conn.execute("SHOW data_checksums").fetchone()[0] == "on"
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"interface_exceptions", "retry_attempts"} <= tables
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(lab.prod.postgres.conninfo(), password="wrong").close()
    assert oct(lab.env_path.stat().st_mode & 0o777) == "0o600"
    assert lab.password not in lab.prod.outputs_path.read_text()


def test_kill_and_restart_recovers_committed_rows(fresh_pg: Lab) -> None:
    lab = fresh_pg
    prod = load_outputs(lab.prod.outputs_path, "prod")
    txid = f"crash-{uuid.uuid4()}"
    with connect(prod) as conn:
        insert(conn, txid)
    lab.prod.postgres.kill()
    with pytest.raises(psycopg.OperationalError):
        connect(prod).close()
    lab.prod.postgres.start()
    with connect(prod) as conn:
        assert (
            conn.execute("SELECT count(*) FROM interface_exceptions WHERE transaction_id = %s", (txid,)).fetchone()[0]
            == 1
        )
    dr = load_outputs(lab.dr.outputs_path, "dr")
    with connect(dr) as standby:
        wait_for_row(standby, txid)


def test_reset_gives_an_empty_fresh_pair(fresh_pg: Lab) -> None:
    lab = fresh_pg
    prod = load_outputs(lab.prod.outputs_path, "prod")
    with connect(prod) as conn:
        insert(conn, f"before-reset-{uuid.uuid4()}")
    switched = stack_file("dr", lab.project_dir).read_text().replace("drtopo:role: standby", "drtopo:role: primary")
    stack_file("dr", lab.project_dir).write_text(switched)  # what a drill's promotion leaves behind
    assert lab.dr.settings.role == "primary"
    start = time.monotonic()
    lab.reset_postgres()
    print(f"reset_postgres took {time.monotonic() - start:.1f} s")
    with connect(load_outputs(lab.prod.outputs_path, "prod")) as conn:
        assert conn.execute("SELECT count(*) FROM interface_exceptions").fetchone()[0] == 0
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    assert lab.status()["servers"]["postgres-dr"]["role"] == "standby"
    assert (lab.prod.settings.role, lab.dr.settings.role) == ("primary", "standby")
    assert load_outputs(lab.dr.outputs_path, "dr").failover == "SECONDARY"
