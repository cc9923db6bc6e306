"""Where the standby's life cycle went when a database became a type (`drtopo.database.database_for`): promotion
and rebuilds are `Database` methods, implemented per platform in `rds` and `self_managed`. Kept only for
`bench/scale.py`'s import of `rebuild_postgres` (now `drtopo.database.self_managed.rebuild_postgres`); to be removed
once it imports that.
"""

from drtopo.database.self_managed import rebuild_postgres

__all__ = ["rebuild_postgres"]
