"""RDS: a database that the RDS control plane runs (promote_read_replica, the program's read replica, a fence by
parameter group, restore-to-time), reached through boto3's client for the stack's region.

Promotion is `promote_read_replica` waited for with boto3's waiter. A rebuild creates the cross-region read replica
that the program declares, with the program's own arguments. A fence attaches a `<instance>-fenced` parameter group
with `default_transaction_read_only` and reboots (which ends the sessions), then proves it with a write when the
endpoint answers. Lag is CloudWatch `ReplicaLag` beside what the endpoint itself tells.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from drtopo import naming
from drtopo.aws import stack_client
from drtopo.database.instance import import_command, instance_inputs, replica_requests
from drtopo.database.pitr import cutover
from drtopo.database.pitr.rds_restore import describe_source, restore_rds
from drtopo.database.pitr.recovery import ArchiveCopy
from drtopo.database.pitr.request import PitrRequest
from drtopo.database.pitr.window import Shown, show, window_rds
from drtopo.database.platform import (
    Database,
    FenceError,
    StandbyError,
    measured,
    prove_read_only,
    reachable,
    streaming_lag,
    wait_writable,
)
from drtopo.database.replication import Lag, rds_replica_bound, rds_replica_lag
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput, Clock, Report, Unsafe
from drtopo.settings import Settings


def is_rds(outputs: StackOutputs) -> bool:
    """Whether `outputs` name an RDS instance (its ARN)."""
    return outputs.db_arn.startswith("arn:") and ":rds:" in outputs.db_arn


def rds_client(outputs: StackOutputs) -> Any:
    return stack_client("rds", outputs)


def describe(outputs: StackOutputs) -> dict[str, Any] | None:
    try:
        return rds_client(outputs).describe_db_instances(DBInstanceIdentifier=outputs.db_instance_id)["DBInstances"][0]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "DBInstanceNotFound":
            return None
        raise


def rds_reachable(outputs: StackOutputs) -> bool:
    try:
        inst = rds_client(outputs).describe_db_instances(DBInstanceIdentifier=outputs.db_instance_id)["DBInstances"][0]
    except (ClientError, BotoCoreError):
        return False
    return inst.get("DBInstanceStatus") == "available"


def region_answers(outputs: StackOutputs) -> bool:
    """Whether the RDS API of the stack's region answers at all (if only to say the instance is not there)."""
    try:
        rds_client(outputs).describe_db_instances(DBInstanceIdentifier=outputs.db_instance_id)
    except ClientError:
        return True
    except BotoCoreError:
        return False
    return True


# ---- promotion ---------------------------------------------------------------------------------------------------


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


def protect_rds(outputs: StackOutputs, name: str) -> dict[str, Any]:
    """A promoted instance's protection: its automated backups (RDS's continuous archiving, the point-in-time window)
    must be on, and a manual snapshot `name` starts its new history now rather than at the next backup window.
    "Once the instance is promoted to a primary instance, backups are taken based on your backup settings" (RDS API
    reference, PromoteReadReplica): with a retention of 0 there are none, so that is refused, not waited for. The
    snapshot is started, not waited for (it takes as long as the data); one of that name already there is kept."""
    inst = describe(outputs)
    if inst is None:
        raise StandbyError(f"RDS instance {outputs.db_instance_id} does not exist in {outputs.region}")
    retention = int(inst.get("BackupRetentionPeriod") or 0)
    if retention < 1:
        raise StandbyError(
            f"automated backups are off on {outputs.db_instance_id} (BackupRetentionPeriod 0): no point-in-time "
            "recovery on the new primary; expected database.backupRetentionDays >= 1"
        )
    try:
        rds_client(outputs).create_db_snapshot(DBSnapshotIdentifier=name, DBInstanceIdentifier=outputs.db_instance_id)
        started = f"snapshot {name} started"
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "DBSnapshotAlreadyExists":
            raise StandbyError(f"snapshot {name} of {outputs.db_instance_id} refused: {exc}") from None
        started = f"snapshot {name} already taken"
    return {"snapshot": name, "rds_backups": f"automated backups kept {retention} days; {started}"}


# ---- generations and rebuilt replicas ----------------------------------------------------------------------------


def generation_outputs(
    outputs: StackOutputs,
    settings: Settings,
    generation: int | None = None,
    refresh: bool = False,
    live_address: bool = True,
) -> StackOutputs:
    """`outputs` naming the RDS instance of `generation` (default: the one `settings` declare now) rather than the
    one the stack last deployed: after a role switch the stack files are ahead of the outputs until `pulumi up`.
    With `live_address`, its address is the live instance's when RDS has it (`refresh`: read it again, e.g. once
    created); a server of the lab's pair keeps its own."""
    identifier = naming.db_identifier(settings, generation)
    if identifier == outputs.db_instance_id and not refresh:
        return outputs
    update: dict[str, Any] = {
        "db_instance_id": identifier,
        "db_arn": outputs.db_arn.rsplit(":db:", 1)[0] + f":db:{identifier}",
    }
    if live_address:
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
    target: StackOutputs,
    source: StackOutputs,
    settings: Settings,
    deployed: str | None = None,
    live_address: bool = True,
) -> dict[str, Any]:
    """The read replica of `source` that `settings` declare (the current generation), as the program declares it.

    Nothing is renamed, nothing replaced: a missing replica is created with exactly the program's arguments
    (`drtopo.database.instance`: the generation's identifier, the stack's own database key `dbKmsKeyArn`), in the
    provider's two calls; the result names the `pulumi import` that adopts it. An instance under that identifier
    that replicates anything else is refused: RDS cannot demote it, the stack needs its next generation.
    `deployed`: the instance the stack's outputs (its state) named; when that is another, the state must adopt it.
    `live_address`: see `generation_outputs`.
    """
    if not target.db_kms_key_arn:
        raise StandbyError(
            f"outputs of {target.stack} have no dbKmsKeyArn; expected the database key the program encrypts "
            "its replica with (pulumi stack output dbKmsKeyArn)"
        )
    declared = generation_outputs(target, settings, live_address=live_address)
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


# ---- fencing -----------------------------------------------------------------------------------------------------

# After the rename swap the endpoint's name resolves to the restored instance once RDS has moved it (minutes at
# worst); the cutover waits this long for a write to go through there before it says that none did.
WRITABLE_WAIT_SECONDS = 300.0
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


# ---- the type ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RdsDatabase:
    """A database the RDS control plane runs. `live_address` False: the address in the outputs is kept across
    generations (the lab's pair, whose clients reach the real server there)."""

    outputs: StackOutputs
    live_address: bool = True

    def reachable(self) -> bool:
        return rds_reachable(self.outputs)

    def rebuildable_when_down(self) -> bool:
        return region_answers(self.outputs)

    def open_for_reading(self) -> bool:
        return self.reachable()  # an instance is started by its control plane, never from here

    def require_replica(self) -> None:
        inst = describe(self.outputs) or {}
        if not inst.get("ReadReplicaSourceDBInstanceIdentifier"):
            raise Unsafe(f"RDS instance {self.outputs.db_instance_id} is not a read replica; target not ready")

    def lag(self, primary: Database | None) -> Lag:
        """Against an answering primary: the worst of the replica's replay lag and CloudWatch's recent ReplicaLag.
        Otherwise CloudWatch's bound (`loss_bound.cloudwatch_bound`: ReplicaLag is the age of the last replayed
        commit, so it grows with the clock once the source is silent), with what the replica's server says it
        received and replayed when its endpoint answers (RDS keeps its log away from this host)."""
        lags = streaming_lag(self.outputs, primary.outputs if primary is not None else None)
        primary_answers = bool(lags) and not lags[0].bound
        if primary_answers or (not lags and primary is not None and reachable(primary.outputs)):
            return measured([*lags, rds_replica_lag(self.outputs.db_instance_id, self.outputs.region)])
        bound = rds_replica_bound(self.outputs.db_instance_id, self.outputs.region)
        server = "".join(f"; replica endpoint: {lag.detail}" for lag in lags)
        return replace(bound, detail=bound.detail + server)

    def fence(self) -> dict[str, Any]:
        result = fence_rds(self.outputs)
        if reachable(self.outputs):
            result["proof"] = prove_read_only(self.outputs)
        else:
            result["proof"] = "endpoint not reachable from here after the reboot; no write can be attempted"
        return result

    def promote(self, lift_lease_fence: bool = False) -> dict[str, Any]:
        # No writability wait here: the caller lifts the lease's fence once the instance is available.
        return promote_rds(self.outputs)

    def rebuild(self, source: Database, settings: Settings, deployed: str | None = None) -> dict[str, Any]:
        return rebuild_rds(self.outputs, source.outputs, settings, deployed, self.live_address)

    def protect(self, name: str) -> dict[str, Any]:
        return protect_rds(self.outputs, name)

    def generation(self, settings: Settings, generation: int | None = None, refresh: bool = False) -> RdsDatabase:
        outputs = generation_outputs(self.outputs, settings, generation, refresh, self.live_address)
        return RdsDatabase(outputs, self.live_address)

    # -- point in time ---------------------------------------------------------------------------------------------
    def restorer(self, rds: bool = False) -> RdsDatabase:
        return self

    def check_restore(self, request: PitrRequest) -> None:
        if not request.window and (request.target_dir or request.target_port):
            raise BadInput("--target-dir/--target-port are for a self-managed restore; RDS takes --target-instance")
        if request.wal_source != "archive":
            raise BadInput(f"--wal-source {request.wal_source} is for a self-managed restore; RDS replays its own logs")

    def restore_title(self, request: PitrRequest) -> str:
        return "RDS, for cutover" if request.cutover else "RDS"

    def window(self, report: Report, copy: ArchiveCopy | None = None) -> Shown:
        window = window_rds(describe_source(rds_client(self.outputs), self.outputs), datetime.now(UTC))
        return show(
            window,
            f"instance {self.outputs.db_instance_id}'s",
            report,
            lambda backup: str(backup.path),
            lambda target: "the automated backup RDS picks itself, then its transaction logs to T",
        )

    def restore(
        self, request: PitrRequest, report: Report, clock: Clock, copy: ArchiveCopy | None = None
    ) -> dict[str, Any]:
        return restore_rds(self.outputs, request.target, report, clock, request.target_instance, request.dry_run)

    def cutover(
        self,
        request: PitrRequest,
        report: Report,
        clock: Clock,
        peer: Callable[[], Database | None] = lambda: None,
        steps: cutover.Steps | None = None,
    ) -> list[str]:
        """Corruption recovery on RDS: restore to T as a new instance, the same re-apply, fence (read-only parameter
        group), validation, then the rename swap: the damaged instance is kept as `<id>-damaged-<T>`, the restored
        one takes `<id>` and with it the endpoint. The dry run shows the plan only: the rows are known once the
        restored instance exists. The peer is left as it is (its replica follows the endpoint's instance)."""
        outputs, target = self.outputs, request.target
        if not request.damage_xids:
            raise BadInput("--cutover needs --damage-xid XID (the damaging transaction: it is never re-applied)")
        kept = cutover.kept_identifier(outputs.db_instance_id, target)
        with clock.step(f"point-in-time restore to {target.isoformat()} ({self.restore_title(request)})"):
            restored = self.restore(request, report, clock)
        report.measured.update(restored, restore_seconds=clock.steps[-1]["seconds"], damaged_kept=kept)
        name = restored["target_instance"]
        if request.dry_run:
            report.check(
                "plan",
                True,
                f"restore as {name}, re-apply the writes after T except transaction(s) {list(request.damage_xids)}, "
                f"fence {outputs.db_instance_id}, validate, rename {outputs.db_instance_id} -> {kept} (kept) and "
                f"{name} -> {outputs.db_instance_id}; the rows to re-apply are listed once {name} exists",
            )
            return []
        restored_conninfo = psycopg.conninfo.make_conninfo(
            host=restored["address"],
            port=str(restored["port"]),
            user=outputs.db_user,
            dbname=outputs.db_name,
            sslmode="require",
            connect_timeout="10",
        )
        outcome = cutover.reapply_until_fenced(
            outputs,
            report,
            clock,
            restored_conninfo,
            list(request.damage_xids),
            self.fence,
            lambda damaged, new: None,
        )
        if outcome is None:
            return []
        swapped = cutover.rds_rename_swap(rds_client(outputs), outputs.db_instance_id, name, target, clock)
        report.check(
            "cutover", True, f"{name} now serves as {outputs.db_instance_id}; the damaged instance is kept as {kept}"
        )
        # Writes are refused from the start of the fence (outcome.fenced_from) until the endpoint, now the restored
        # instance's, takes one: the write-unavailability window the report shows.
        endpoint = f"{outputs.db_address}:{outputs.db_port}"
        with clock.step(f"wait until the restored instance takes writes at {endpoint}"):
            writable_at = wait_writable(outputs, WRITABLE_WAIT_SECONDS)
        if writable_at is None:
            report.check(
                "writable",
                False,
                f"{endpoint} took no write within {WRITABLE_WAIT_SECONDS:g} s of the swap; check the instance "
                f"{outputs.db_instance_id} and its endpoint (`python -m scripts.validate --stack {outputs.stack} "
                "--expect primary`)",
            )
        report.measured.update(
            outcome.measured(), swap=swapped, writable_at=writable_at, cutover_at=writable_at or time.time()
        )
        return []

    def follow(self, source: Database, report: Report, clock: Clock) -> None:
        cutover.standby_not_here(report, source.outputs)
