"""Point-in-time recovery to a time T, one concept per module:

- `request`: what a restore is asked (the validated flags of `restore pitr`);
- `window`: T as asked for and the restorable window it must fall in;
- `labels`: base backups and their labels, the one a restore to T starts from;
- `wal_names`: WAL file names, segments and timelines, the gaps in an archive;
- `recovery`: the self-managed restore (base backup + WAL archive replayed to T in a new data directory, promoted);
- `rds_restore`: the RDS restore-to-time into a new instance;
- `cutover`: the restored instance takes the damaged one's place (self-managed and RDS rename swaps).

The names below are those other packages still import from here (drtopo.backup.wal, bench/bench_backup.py,
tests/unit/test_wal_bucket.py); new code imports the module that holds them.
"""

from drtopo.database.pitr.cutover import archive_command_line
from drtopo.database.pitr.labels import REMOTE_LABEL, parse_backup_label, read_label
from drtopo.database.pitr.recovery import stop_instance
from drtopo.database.pitr.wal_names import (
    DEFAULT_SEGMENT_SIZE,
    WAL_NAME,
    chain_gaps,
    parse_history,
    segment_distance,
    segment_of,
)

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "REMOTE_LABEL",
    "WAL_NAME",
    "archive_command_line",
    "chain_gaps",
    "parse_backup_label",
    "parse_history",
    "read_label",
    "segment_distance",
    "segment_of",
    "stop_instance",
]
