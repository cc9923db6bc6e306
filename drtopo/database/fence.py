"""Where fencing went when a database became a type (`drtopo.database.database_for`): `Database.fence` and
`Database.reachable`, implemented per platform in `rds` and `self_managed`. Kept only for the RDS fence test's
imports (`tests/integration/test_promote.py`: now `drtopo.database.rds.fence_rds` and `rds_client`); to be removed
once it imports those.
"""

from drtopo.database.rds import fence_rds, rds_client

__all__ = ["fence_rds", "rds_client"]
