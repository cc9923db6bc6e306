"""The rules, one module per concern; importing this package registers them all."""

from policies.rules import (
    application,
    database,
    dns,
    generic,
    identity,
    kubernetes,
    notifications,
    objectives,
    regions,
    storage,
)

__all__ = [
    "application",
    "database",
    "dns",
    "generic",
    "identity",
    "kubernetes",
    "notifications",
    "objectives",
    "regions",
    "storage",
]
