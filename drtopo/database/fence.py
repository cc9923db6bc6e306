"""Fence the old primary so that it accepts no more writes: the guard against a split brain during failover.

Self-managed PostgreSQL: `ALTER SYSTEM SET default_transaction_read_only = on`, reload, terminate every client
session (so none keeps a read-write transaction open), then prove it with a fresh session whose write is refused.
This stops applications, which do not override the default; it writes no WAL, so the standby can still catch up to
the fenced primary's final position. RDS: attach a `<instance>-fenced` parameter group with the same setting and
reboot (which ends the sessions), then the same proof when the endpoint answers. A primary that is reachable but
cannot be fenced raises `FenceError`: promotion must not go ahead.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from drtopo.aws import stack_client
from drtopo.database.connect import connect
from drtopo.outputs import StackOutputs

PROBE = "CREATE TABLE drtopo_fence_probe (id int)"


class FenceError(RuntimeError):
    """The old primary is reachable and still accepts (or may accept) writes."""


def reachable(outputs: StackOutputs) -> bool:
    try:
        with connect(outputs):
            return True
    except psycopg.OperationalError:
        return False


def prove_read_only(outputs: StackOutputs) -> str:
    """Try a write from a new session; returns how it was refused, raises FenceError if it went through."""
    with connect(outputs, autocommit=False) as conn:
        try:
            conn.execute(PROBE)
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            conn.rollback()
            return f"write refused: {str(exc).strip().splitlines()[0]}"
        conn.rollback()
    raise FenceError(f"{outputs.db_address}:{outputs.db_port} still accepts writes after fencing")


def _wait_default_read_only(outputs: StackOutputs, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with connect(outputs) as conn:
            if conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on":
                return
        if time.monotonic() > deadline:
            raise FenceError("default_transaction_read_only is still off in new sessions after the reload")
        time.sleep(0.05)


def fence_postgres(outputs: StackOutputs) -> dict[str, Any]:
    try:
        with connect(outputs) as conn:
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
            _wait_default_read_only(outputs)
            terminated = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()[0]
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0]
        raise FenceError(
            f"cannot fence {outputs.db_address}:{outputs.db_port} as {outputs.db_user}: {reason}"
        ) from None
    return {"method": "ALTER SYSTEM default_transaction_read_only + reload", "sessions_terminated": terminated}


def unfence_postgres(conn: psycopg.Connection) -> None:
    """Undo the fence on a server that has become (or is about to become) the primary."""
    conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
    conn.execute("SELECT pg_reload_conf()")


def rds_client(outputs: StackOutputs) -> Any:
    return stack_client("rds", outputs)


def rds_reachable(outputs: StackOutputs) -> bool:
    try:
        inst = rds_client(outputs).describe_db_instances(DBInstanceIdentifier=outputs.db_instance_id)["DBInstances"][0]
    except (ClientError, BotoCoreError):
        return False
    return inst.get("DBInstanceStatus") == "available"


READ_ONLY = {"ParameterName": "default_transaction_read_only", "ParameterValue": "1", "ApplyMethod": "immediate"}


def fence_parameters(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fence group's parameters: every user-set parameter of the instance's group (rds.force_ssl,
    archive_timeout, ...) kept as it is, plus read-only by default (pure)."""
    kept = [
        {
            "ParameterName": p["ParameterName"],
            "ParameterValue": p["ParameterValue"],
            "ApplyMethod": "immediate" if p.get("ApplyType") == "dynamic" else "pending-reboot",
        }
        for p in current
        if p.get("ParameterValue") is not None and p["ParameterName"] != READ_ONLY["ParameterName"]
    ]
    return [*kept, READ_ONLY]


def _user_parameters(rds: Any, group: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in rds.get_paginator("describe_db_parameters").paginate(DBParameterGroupName=group, Source="user"):
        found += page.get("Parameters", [])
    return found


def _wait_group_attached(rds: Any, instance_id: str, group: str, timeout: float = 600, delay: float = 5) -> str:
    """Wait until the instance names `group` as its parameter group; returns its apply status."""
    deadline = time.monotonic() + timeout
    while True:
        inst = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
        attached = {g["DBParameterGroupName"]: g.get("ParameterApplyStatus") for g in inst.get("DBParameterGroups", [])}
        status = attached.get(group)
        if status in ("pending-reboot", "in-sync") and inst.get("DBInstanceStatus") == "available":
            return status
        if time.monotonic() > deadline:
            raise FenceError(f"RDS instance {instance_id} did not take parameter group {group} within {timeout:.0f} s")
        time.sleep(delay)


def fence_rds(outputs: StackOutputs) -> dict[str, Any]:
    """Attach a copy of the instance's parameter group made read-only by default, wait until RDS has attached it,
    then reboot (which ends every session and applies it). RDS applies a parameter group change asynchronously: a
    reboot before the instance names the new group reboots into the old one."""
    rds = rds_client(outputs)
    group = f"{outputs.db_instance_id}-fenced"
    try:
        inst = rds.describe_db_instances(DBInstanceIdentifier=outputs.db_instance_id)["DBInstances"][0]
        family = f"postgres{inst.get('EngineVersion', '15').split('.')[0]}"
        current = next((g["DBParameterGroupName"] for g in inst.get("DBParameterGroups", [])), None)
        try:
            rds.create_db_parameter_group(
                DBParameterGroupName=group, DBParameterGroupFamily=family, Description="drtopo fence: read-only"
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "DBParameterGroupAlreadyExists":
                raise
        kept = _user_parameters(rds, current) if current and current != group else []
        parameters = fence_parameters(kept)
        for start in range(0, len(parameters), 20):  # the API takes at most 20 parameters per call
            rds.modify_db_parameter_group(DBParameterGroupName=group, Parameters=parameters[start : start + 20])
        rds.modify_db_instance(
            DBInstanceIdentifier=outputs.db_instance_id, DBParameterGroupName=group, ApplyImmediately=True
        )
        before_reboot = _wait_group_attached(rds, outputs.db_instance_id, group)
        rds.reboot_db_instance(DBInstanceIdentifier=outputs.db_instance_id)
        rds.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier=outputs.db_instance_id, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
        )
    except (ClientError, BotoCoreError) as exc:
        raise FenceError(f"cannot fence RDS instance {outputs.db_instance_id}: {exc}") from None
    return {
        "method": f"RDS parameter group {group} (default_transaction_read_only=1) + reboot",
        "kept_parameters": sorted(p["ParameterName"] for p in parameters if p is not READ_ONLY),
        "status_before_reboot": before_reboot,
        "sessions_terminated": None,
    }


def fence(outputs: StackOutputs) -> dict[str, Any]:
    """Fence `outputs`' database, which the caller found reachable, and prove that a new write is refused."""
    result = fence_postgres(outputs) if outputs.self_managed else fence_rds(outputs)
    if outputs.self_managed or reachable(outputs):
        result["proof"] = prove_read_only(outputs)
    else:
        result["proof"] = "endpoint not reachable from here after the reboot; no write can be attempted"
    return result
