"""The standby's life cycle: promote it to primary, and rebuild a former primary as a standby of the new one.

Two halves, each where it applies: the RDS control plane (`promote_read_replica` with boto3's waiter; for a rebuild,
the cross-region read replica the program declares, with the program's own arguments) when the stack's database is
an RDS instance, and the data plane of a self-managed PostgreSQL (`pg_promote()` and a write probe; `pg_rewind`,
falling back to a fresh `pg_basebackup`, for a rebuild) when the outputs carry `selfManaged`. The lab has both: the
emulator's RDS instances and real servers.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import ClientError

from drtopo import naming
from drtopo.database.connect import connect, password
from drtopo.database.fence import rds_client, unfence_postgres
from drtopo.database.instance import import_command, instance_inputs, replica_requests
from drtopo.outputs import SelfManagedPostgres, StackOutputs
from drtopo.settings import Settings

# Kept across a rebuild: pg_rewind and pg_basebackup would bring the source's copies (its port, its name).
CONFIG_FILES = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf")
# Settings a rebuild drops from postgresql.auto.conf before writing its own.
_REPLACED_SETTINGS = ("primary_conninfo", "primary_slot_name", "default_transaction_read_only")


class StandbyError(RuntimeError):
    """A promotion or rebuild did not reach its end state."""


def is_rds(outputs: StackOutputs) -> bool:
    return outputs.db_arn.startswith("arn:") and ":rds:" in outputs.db_arn


def describe(outputs: StackOutputs) -> dict[str, Any] | None:
    try:
        return rds_client(outputs).describe_db_instances(DBInstanceIdentifier=outputs.db_instance_id)["DBInstances"][0]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "DBInstanceNotFound":
            return None
        raise


def promote_rds(outputs: StackOutputs) -> dict[str, Any]:
    rds = rds_client(outputs)
    inst = describe(outputs)
    if inst is None:
        raise StandbyError(f"RDS instance {outputs.db_instance_id} does not exist in {outputs.region}")
    source = inst.get("ReadReplicaSourceDBInstanceIdentifier")
    if not source:
        return {"rds": f"{outputs.db_instance_id} is already a standalone instance"}
    try:
        rds.promote_read_replica(DBInstanceIdentifier=outputs.db_instance_id)
    except ClientError as exc:
        if "not a read replica" not in str(exc):
            raise
    rds.get_waiter("db_instance_available").wait(
        DBInstanceIdentifier=outputs.db_instance_id, WaiterConfig={"Delay": 2, "MaxAttempts": 900}
    )
    return {"rds": f"promoted {outputs.db_instance_id} (was a replica of {source}); available"}


def wait_writable(outputs: StackOutputs, timeout: float = 60) -> float:
    """Poll until a new session can get a transaction id and its default is read-write; returns seconds waited."""
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout:
        try:
            with connect(outputs) as conn:
                read_only = conn.execute("SHOW default_transaction_read_only").fetchone()[0]
                conn.execute("SELECT txid_current()")
                if read_only == "off":
                    return time.monotonic() - start
                last = "default_transaction_read_only is on"
        except psycopg.Error as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        time.sleep(0.05)
    raise StandbyError(f"{outputs.db_address}:{outputs.db_port} not writable after {timeout:.0f} s: {last}")


def promote_postgres(outputs: StackOutputs) -> dict[str, Any]:
    with connect(outputs) as conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        if in_recovery and not conn.execute("SELECT pg_promote(true, 60)").fetchone()[0]:
            raise StandbyError(f"pg_promote() on {outputs.db_address}:{outputs.db_port} did not finish in 60 s")
        # A server fenced as an old primary keeps the setting in postgresql.auto.conf; as the primary it must go.
        unfence_postgres(conn)
    waited = wait_writable(outputs)
    with connect(outputs) as conn:
        timeline, lsn = conn.execute(
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int,"
            " pg_current_wal_lsn()::text"
        ).fetchone()
    return {
        "postgres": "pg_promote()" if in_recovery else "already out of recovery",
        "writable_after_seconds": round(waited, 3),
        "timeline": timeline,
        "lsn": lsn,
    }


def promote(outputs: StackOutputs) -> dict[str, Any]:
    """Promote the stack's database: RDS control plane, then the self-managed server, whichever apply."""
    result: dict[str, Any] = {}
    if is_rds(outputs):
        result.update(promote_rds(outputs))
    if outputs.self_managed:
        result.update(promote_postgres(outputs))
    elif not is_rds(outputs):
        raise StandbyError(f"outputs of {outputs.stack} name neither an RDS instance nor a self-managed server")
    return result


def _as_owner(sm: SelfManagedPostgres) -> dict[str, Any]:
    if os.geteuid() == 0 and sm.os_user:
        return {"user": sm.os_user, "group": sm.os_user, "extra_groups": []}
    return {}


def _run(sm: SelfManagedPostgres, argv: list[str], secret: str | None = None, timeout: float = 300) -> str:
    env = {**os.environ, "PGPASSWORD": secret} if secret else dict(os.environ)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False, **_as_owner(sm))
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise StandbyError(f"{Path(argv[0]).name} failed ({proc.returncode}): {tail[0]}")
    return proc.stdout + proc.stderr


def _bin(sm: SelfManagedPostgres, name: str) -> str:
    return str(Path(sm.bin_dir) / name)


def _running(sm: SelfManagedPostgres) -> bool:
    proc = subprocess.run(
        [_bin(sm, "pg_ctl"), "status", "-D", sm.data_dir], capture_output=True, check=False, **_as_owner(sm)
    )
    return proc.returncode == 0


def _source_conninfo(source: StackOutputs) -> str:
    return psycopg.conninfo.make_conninfo(
        host=source.db_address, port=str(source.db_port), user=source.db_user, dbname="postgres"
    )


def standby_auto_conf(text: str, primary_conninfo: str) -> str:
    """postgresql.auto.conf for a standby: every setting kept but a fence or an old upstream, plus its new upstream."""
    kept = [line for line in text.splitlines() if line.split("=", 1)[0].strip() not in _REPLACED_SETTINGS]
    quoted = primary_conninfo.replace("\\", "\\\\").replace("'", "''")
    return "\n".join([*kept, f"primary_conninfo = '{quoted}'"]) + "\n"


def _restore_config(sm: SelfManagedPostgres, saved: dict[str, bytes], source: StackOutputs) -> None:
    data = Path(sm.data_dir)
    for name, content in saved.items():
        (data / name).write_bytes(content)
    auto = data / "postgresql.auto.conf"
    conninfo = psycopg.conninfo.make_conninfo(_source_conninfo(source), password=password(source) or "")
    auto.write_text(standby_auto_conf(auto.read_text() if auto.is_file() else "", conninfo))
    (data / "standby.signal").touch()
    owner = pwd.getpwnam(sm.os_user) if os.geteuid() == 0 else None
    for path in [auto, data / "standby.signal", *(data / n for n in saved)]:
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        path.chmod(0o600)


def rebuild_postgres(target: StackOutputs, source: StackOutputs, base_backup: bool = False) -> dict[str, Any]:
    """Make `target`'s server a streaming standby of `source`: stop it, pg_rewind (else pg_basebackup), start it.

    `base_backup` skips pg_rewind and copies the whole database (what the fallback costs: bench/scale.py)."""
    sm = target.self_managed
    assert sm is not None
    data = Path(sm.data_dir)
    log = data.parent / f"{data.name}.log"
    if _running(sm):
        _run(sm, [_bin(sm, "pg_ctl"), "stop", "-D", sm.data_dir, "-m", "fast", "-w", "-t", "60"])
    saved = {name: (data / name).read_bytes() for name in CONFIG_FILES if (data / name).is_file()}
    secret = password(source)
    # pg_rewind reads the source's timeline from its control file, which a recently promoted server only updates
    # at its next checkpoint (PostgreSQL's pg_rewind documentation asks for one).
    with connect(source) as conn:
        conn.execute("CHECKPOINT")
    method = "pg_rewind"
    try:
        if base_backup:
            raise StandbyError("a base backup was asked for")
        detail = _run(
            sm,
            [_bin(sm, "pg_rewind"), f"--target-pgdata={sm.data_dir}", f"--source-server={_source_conninfo(source)}"],
            secret,
        )
        if "no rewind required" in detail:
            method = "pg_rewind (no rewind required)"
    except StandbyError as exc:
        method = f"pg_basebackup (pg_rewind failed: {exc})"
        for child in data.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        _run(
            sm,
            [
                _bin(sm, "pg_basebackup"),
                "-d",
                _source_conninfo(source),
                "-D",
                sm.data_dir,
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            secret,
        )
    _restore_config(sm, saved, source)
    _run(sm, [_bin(sm, "pg_ctl"), "start", "-D", sm.data_dir, "-l", str(log), "-w", "-t", "120"])
    return {"postgres": method, "log": str(log)}


def generation_outputs(
    outputs: StackOutputs, settings: Settings, generation: int | None = None, refresh: bool = False
) -> StackOutputs:
    """`outputs` naming the RDS instance of `generation` (default: the one `settings` declare now) rather than the
    one the stack last deployed: after a role switch the stack files are ahead of the outputs until `pulumi up`.
    Its address is the live instance's when RDS has it (`refresh`: read it again, e.g. once created); a
    self-managed server (the lab) keeps its own."""
    if not is_rds(outputs):
        return outputs
    identifier = naming.db_identifier(settings, generation)
    if identifier == outputs.db_instance_id and not refresh:
        return outputs
    update: dict[str, Any] = {
        "db_instance_id": identifier,
        "db_arn": outputs.db_arn.rsplit(":db:", 1)[0] + f":db:{identifier}",
    }
    if outputs.self_managed is None:
        inst = describe(outputs.model_copy(update=update))
        if inst is not None:
            update.update(db_arn=inst["DBInstanceArn"], db_address=inst["Endpoint"]["Address"])
    return outputs.model_copy(update=update)


def _parameter_group_exists(rds: Any, name: str) -> bool:
    try:
        found = rds.describe_db_parameter_groups(DBParameterGroupName=name)["DBParameterGroups"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "DBParameterGroupNotFound":
            return False
        raise
    return bool(found)  # RDS answers DBParameterGroupNotFound; the emulator an empty list


def _differing(inst: dict[str, Any], modify: dict[str, Any]) -> dict[str, Any]:
    """The ModifyDBInstance arguments whose value the instance does not have yet (the provider compares likewise)."""
    current = {
        "BackupRetentionPeriod": inst.get("BackupRetentionPeriod"),
        "MaxAllocatedStorage": inst.get("MaxAllocatedStorage"),
        "DBParameterGroupName": next((g["DBParameterGroupName"] for g in inst.get("DBParameterGroups", [])), None),
    }
    return {k: v for k, v in modify.items() if k not in current or current[k] != v}


def rebuild_rds(
    target: StackOutputs, source: StackOutputs, settings: Settings, deployed: str | None = None
) -> dict[str, Any]:
    """The read replica of `source` that `settings` declare (the current generation), as the program declares it.

    Nothing is renamed, nothing replaced: a missing replica is created with exactly the program's arguments
    (`drtopo.database.instance`: the generation's identifier, the stack's own database key `dbKmsKeyArn`), in the
    provider's two calls; the result names the `pulumi import` that adopts it. An instance under that identifier
    that replicates anything else is refused: RDS cannot demote it, the stack needs its next generation.
    `deployed`: the instance the stack's outputs (its state) named; when that is another, the state must adopt it.
    """
    if not target.db_kms_key_arn:
        raise StandbyError(
            f"outputs of {target.stack} have no dbKmsKeyArn; expected the database key the program encrypts "
            "its replica with (pulumi stack output dbKmsKeyArn)"
        )
    declared = generation_outputs(target, settings)
    identifier = declared.db_instance_id
    create, modify = replica_requests(
        instance_inputs(settings, settings.database.generation, target.db_kms_key_arn), source.db_arn
    )
    rds = rds_client(target)
    inst = describe(declared)
    result: dict[str, Any] = {}
    if inst is None:
        rds.create_db_instance_read_replica(**create)
        rds.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier=identifier, WaiterConfig={"Delay": 5, "MaxAttempts": 720}
        )
        inst = describe(declared) or {}
        result["rds"] = f"created {identifier}, a replica of {source.db_instance_id}, with the program's arguments"
    else:
        replicates = inst.get("ReadReplicaSourceDBInstanceIdentifier")
        if replicates not in (source.db_arn, source.db_instance_id):
            raise StandbyError(
                f"RDS instance {identifier} exists and replicates {replicates or 'nothing'}, not "
                f"{source.db_instance_id}; RDS cannot demote an instance: {settings.stack} needs its next "
                "drtopo:database.generation"
            )
        result["rds"] = f"{identifier} is already a replica of {source.db_instance_id}"
    group = modify.get("DBParameterGroupName")
    if group and not _parameter_group_exists(rds, group):
        # Declared by the stack in both roles, so present wherever it was deployed; without it (a lab, a stack
        # never deployed here) `pulumi up` attaches it later, in place (not ForceNew).
        modify.pop("DBParameterGroupName")
        result["parameter_group"] = f"{group} is not in {target.region}: pulumi up attaches it (in place)"
    changes = _differing(inst, modify)
    if set(changes) - {"DBInstanceIdentifier", "ApplyImmediately"}:
        rds.modify_db_instance(**changes)
        rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=identifier, WaiterConfig={"Delay": 5})
        if "DBParameterGroupName" in changes:
            # A new parameter group applies at the next reboot; the provider reboots a replica it creates likewise.
            rds.reboot_db_instance(DBInstanceIdentifier=identifier)
            rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=identifier, WaiterConfig={"Delay": 5})
        result["modified"] = sorted(set(changes) - {"DBInstanceIdentifier", "ApplyImmediately"})
    if "created" in result["rds"] or (deployed or target.db_instance_id) != identifier:
        # Made here, or not what the stack's outputs (its state) name: the state adopts it, under the program's name.
        result["pulumi_import"] = [import_command(settings)]
    return result


def rebuild(
    target: StackOutputs, source: StackOutputs, settings: Settings, deployed: str | None = None
) -> dict[str, Any]:
    """Make `target` (whose stack `settings` describe) a replica of `source`: RDS and the self-managed server."""
    result: dict[str, Any] = {}
    if is_rds(target):
        result.update(rebuild_rds(target, source, settings, deployed))
    if target.self_managed:
        result.update(rebuild_postgres(target, source))
    return result
