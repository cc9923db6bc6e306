"""Fencing as the failover called it before a database became a type: each is now a method of the stack's
`Database` (`drtopo.database.database_for`: `reachable`, `fence`); these delegates stay until drtopo.failover calls
the type itself.
"""

from __future__ import annotations

from typing import Any

from drtopo.database import database_for
from drtopo.database.platform import FenceError, prove_read_only, reachable
from drtopo.database.rds import fence_rds, rds_client, rds_reachable
from drtopo.database.self_managed import fence_postgres, unfence_postgres
from drtopo.outputs import StackOutputs

__all__ = [
    "FenceError",
    "fence",
    "fence_postgres",
    "fence_rds",
    "prove_read_only",
    "rds_client",
    "rds_reachable",
    "reachable",
    "unfence_postgres",
]


def fence(outputs: StackOutputs) -> dict[str, Any]:
    """`Database.fence`."""
    return database_for(outputs).fence()
