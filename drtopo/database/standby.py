"""The standby's life cycle as the failover called it before a database became a type: promote, rebuild, the
generation's outputs. Each is now a method of the stack's `Database` (`drtopo.database.database_for`); these
delegates stay until drtopo.failover calls the type itself.
"""

from __future__ import annotations

from typing import Any

from drtopo.database import NoDatabase, database_for
from drtopo.database.platform import StandbyError
from drtopo.database.rds import describe, is_rds, region_answers
from drtopo.database.self_managed import rebuild_postgres
from drtopo.outputs import StackOutputs
from drtopo.settings import Settings

__all__ = [
    "StandbyError",
    "describe",
    "generation_outputs",
    "is_rds",
    "promote",
    "rebuild",
    "rebuild_postgres",
    "region_answers",
]


def promote(outputs: StackOutputs) -> dict[str, Any]:
    """`Database.promote`."""
    try:
        database = database_for(outputs)
    except NoDatabase:
        neither = f"outputs of {outputs.stack} name neither an RDS instance nor a self-managed server"
        raise StandbyError(neither) from None
    return database.promote()


def rebuild(
    target: StackOutputs, source: StackOutputs, settings: Settings, deployed: str | None = None
) -> dict[str, Any]:
    """`Database.rebuild`."""
    return database_for(target).rebuild(database_for(source), settings, deployed)


def generation_outputs(
    outputs: StackOutputs, settings: Settings, generation: int | None = None, refresh: bool = False
) -> StackOutputs:
    """`Database.generation`'s outputs."""
    try:
        database = database_for(outputs)
    except NoDatabase:
        return outputs
    return database.generation(settings, generation, refresh).outputs
