"""The database parameters the program sets on RDS, as pure functions: the program declares them, the lab's
emulator holds them, and the fence copies them (so a fenced primary still enforces TLS and archiving)."""

from __future__ import annotations

from drtopo.settings import Database


def parameter_family(engine_version: str) -> str:
    """RDS parameter group family of a PostgreSQL version: `15` and `15.7` -> `postgres15`."""
    return f"postgres{engine_version.split('.')[0]}"


def parameters(database: Database) -> list[dict[str, str]]:
    """TLS only, and a WAL segment archived at least every `archive_timeout_seconds` (bounds PITR data loss)."""
    return [
        {"name": "rds.force_ssl", "value": "1"},
        {"name": "archive_timeout", "value": str(database.archive_timeout_seconds)},
        {"name": "log_connections", "value": "1"},
    ]
