"""PostgreSQL, self-managed or RDS: connect, client tools, replication lag, fencing, promotion and rebuilt standbys,
point-in-time restore, and the fast comparison of two databases.

A stack's database is a `Database` (`platform`), one implementation per platform (`rds`, `self_managed`, and the
lab's `paired`), chosen once from the stack outputs by `database_for`.
"""

from __future__ import annotations

from drtopo.database.paired import PairedDatabase
from drtopo.database.platform import Database
from drtopo.database.rds import RdsDatabase, is_rds
from drtopo.database.self_managed import SelfManagedDatabase
from drtopo.outputs import StackOutputs
from drtopo.report import BadInput

__all__ = ["Database", "NoDatabase", "database_for"]


class NoDatabase(BadInput):
    """Stack outputs that name neither an RDS instance nor a self-managed server."""


def database_for(outputs: StackOutputs) -> Database:
    """The database `outputs` describe: an RDS instance (its ARN), a self-managed server (`selfManaged`), or both
    (the lab's pair); NoDatabase when they name neither."""
    if is_rds(outputs) and outputs.self_managed is not None:
        control = RdsDatabase(outputs, live_address=False)
        return PairedDatabase(control, SelfManagedDatabase(outputs, outputs.self_managed))
    if outputs.self_managed is not None:
        return SelfManagedDatabase(outputs, outputs.self_managed)
    if is_rds(outputs):
        return RdsDatabase(outputs)
    raise NoDatabase(f"outputs of {outputs.stack} name neither an RDS instance nor selfManaged")
