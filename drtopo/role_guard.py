"""The live-state guard: a stack's configured role must agree with what the cloud says before anything is declared.

The program reads two things it can see at preview (`components/live_state.py`, through Pulumi data sources): the
role marker promote writes (`drtopo.failover.marker`, newest of both regions) and whether the database of the
stack's current generation is a read replica. `judge` (pure) refuses, in one line, a role that contradicts either,
unless `drtopo:roleOverride` names that very role; what it could not read (a first deployment, a region that does
not answer) is a note, never a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drtopo.failover.marker import RoleMarker
from drtopo.settings import Role, Settings


@dataclass(frozen=True)
class LiveState:
    """What the program could read: the newest marker (None: none readable), whether the current generation's
    instance is a replica (None: unreadable or absent), and a note for each thing it could not read."""

    marker: RoleMarker | None = None
    marker_where: str = ""
    replica_of: str | None = None
    database: str = ""
    database_is_replica: bool | None = None
    unread: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    refusal: str | None
    notes: list[str] = field(default_factory=list)


def contradictions(settings: Settings, live: LiveState) -> list[str]:
    """What the live state says against `settings.role` (pure)."""
    found = []
    role, file = settings.role, f"Pulumi.{settings.stack}.yaml"
    if live.marker is not None:
        said = live.marker.role_of(settings.stack)
        if said is not None and said is not role:
            found.append(
                f"{file} says drtopo:role {role.value} but the role marker {live.marker_where} says {said.value} "
                f"({live.marker.describe()}); commit the stack files promote wrote"
            )
    if live.database_is_replica is True and role is Role.PRIMARY:
        found.append(
            f"{file} says drtopo:role primary but its database {live.database} is still a read replica of "
            f"{live.replica_of}; promote it first (scripts.promote)"
        )
    if live.database_is_replica is False and role is Role.STANDBY:
        found.append(
            f"{file} says drtopo:role standby but its database {live.database} is a standalone instance, which RDS "
            "cannot demote; the stack needs its next drtopo:database.generation (scripts.promote writes it)"
        )
    return found


def judge(settings: Settings, live: LiveState) -> Verdict:
    """Refuse (one line) a configured role the live state contradicts, unless `roleOverride` confirms that role."""
    found = contradictions(settings, live)
    notes = [f"live state not read: {what}; the role is taken from the stack file" for what in live.unread]
    if not found:
        return Verdict(None, notes)
    if settings.role_override is settings.role:
        overridden = [f"overridden by drtopo:roleOverride {settings.role.value}: {c}" for c in found]
        return Verdict(None, [*notes, *overridden])
    override = f"or set drtopo:roleOverride: {settings.role.value} to deploy this role anyway"
    if settings.role_override is not None:
        override += f" (roleOverride {settings.role_override.value} confirms another role)"
    return Verdict(f"refused: {found[0]}; {override}", notes)
