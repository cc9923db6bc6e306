"""What the program reads of the live state before it declares anything: Pulumi data sources only, no boto3.

`read_live_state(settings)` asks AWS, through the provider (so `pulumi preview` reads it too), for the role marker
in both regions (SSM `drtopo.failover.marker.marker_name`) and for the stack's current database generation
(`aws_db_instance` data source: `replicate_source_db` is set while it is a read replica). Whatever cannot be read
(no marker yet, no instance yet, a region that does not answer) becomes a note for `drtopo.role_guard.judge`.
"""

from __future__ import annotations

from pulumi_aws import rds, ssm

from drtopo import naming
from drtopo.failover.marker import MarkerError, RoleMarker, marker_name, newest, parse
from drtopo.role_guard import LiveState
from drtopo.settings import Settings


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _marker(name: str, region: str, unread: list[str]) -> RoleMarker | None:
    try:
        value = ssm.get_parameter(name=name, region=region).value
    except Exception as exc:  # the provider's error for a missing parameter or an unreachable region alike
        unread.append(f"role marker {name} in {region} ({_first_line(exc)})")
        return None
    if not value:
        unread.append(f"role marker {name} in {region} (empty)")
        return None
    try:
        return parse(value, f"{name} in {region}")
    except MarkerError as exc:
        unread.append(str(exc))
        return None


def read_live_state(settings: Settings) -> LiveState:
    name = marker_name(settings.stack, settings.peer_stack)
    unread: list[str] = []
    found = {region: _marker(name, region, unread) for region in (settings.region, settings.peer_region)}
    marker = newest(list(found.values()))
    where = next((f"{name} in {r}" for r, m in found.items() if m is not None and m == marker), "")
    identifier = naming.db_identifier(settings)
    is_replica: bool | None = None
    source = None
    try:
        instance = rds.get_instance(db_instance_identifier=identifier, region=settings.region)
        if instance.db_instance_arn or instance.db_instance_identifier:
            source = instance.replicate_source_db or None
            is_replica = source is not None
        else:
            unread.append(f"database {identifier} in {settings.region} (no answer)")
    except Exception as exc:  # not created yet (first deployment, a new generation) or unreachable
        unread.append(f"database {identifier} in {settings.region} ({_first_line(exc)})")
    return LiveState(
        marker=marker,
        marker_where=where,
        replica_of=source,
        database=identifier,
        database_is_replica=is_replica,
        unread=tuple(unread),
    )
