"""RDS point-in-time restore: `restore_db_instance_to_point_in_time` into a new instance with the source's class,
network, parameter group and tags, waited for until available."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drtopo.aws import stack_client
from drtopo.database.pitr.window import check_window, window_rds
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report


def describe_source(rds: Any, outputs: StackOutputs) -> dict[str, Any]:
    return rds.describe_db_instances(DBInstanceIdentifier=outputs.db_instance_id)["DBInstances"][0]


def restore_rds(
    outputs: StackOutputs,
    target: datetime,
    report: Report,
    clock: Clock,
    new_instance: str | None,
    dry_run: bool,
    wait_seconds: float = 3600,
) -> dict[str, Any]:

    rds = stack_client("rds", outputs)
    source = describe_source(rds, outputs)
    window = window_rds(source, datetime.now(UTC))
    check_window(target, window.earliest, window.latest, f"instance {outputs.db_instance_id}'s")
    name = new_instance or f"{outputs.db_instance_id}-pitr-{target:%Y%m%d%H%M%S}"
    plan = {"source": outputs.db_instance_id, "target_instance": name, "restore_time": target.isoformat()}
    if dry_run:
        report.check("plan", True, f"restore {outputs.db_instance_id} to {target.isoformat()} as {name}")
        return plan
    request: dict[str, Any] = {
        "SourceDBInstanceIdentifier": outputs.db_instance_id,
        "TargetDBInstanceIdentifier": name,
        "RestoreTime": target,
        "DBInstanceClass": source["DBInstanceClass"],
        "MultiAZ": bool(source.get("MultiAZ")),
        "PubliclyAccessible": False,
        "DeletionProtection": True,
        "CopyTagsToSnapshot": True,
        "Tags": [
            {"Key": "drtopo:restored-from", "Value": outputs.db_instance_id},
            {"Key": "drtopo:restore-time", "Value": target.isoformat()},
        ],
    }
    if source.get("DBSubnetGroup"):
        request["DBSubnetGroupName"] = source["DBSubnetGroup"]["DBSubnetGroupName"]
    groups = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", [])]
    if groups:
        request["VpcSecurityGroupIds"] = groups
    params = [g["DBParameterGroupName"] for g in source.get("DBParameterGroups", [])]
    if params:
        request["DBParameterGroupName"] = params[0]
    with clock.step(f"restore_db_instance_to_point_in_time -> {name}"):
        rds.restore_db_instance_to_point_in_time(**request)
    with clock.step(f"wait until {name} is available"):
        rds.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier=name, WaiterConfig={"Delay": 15, "MaxAttempts": int(wait_seconds / 15)}
        )
    restored = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
    endpoint = restored.get("Endpoint") or {}
    report.check(
        "restored instance available",
        restored["DBInstanceStatus"] == "available",
        f"{name} at {endpoint.get('Address')}:{endpoint.get('Port')}",
        value=restored["DBInstanceStatus"],
    )
    return {**plan, "arn": restored["DBInstanceArn"], "address": endpoint.get("Address"), "port": endpoint.get("Port")}
