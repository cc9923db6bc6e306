"""The rules, one module per concern; importing this package registers them all."""

from policies.rules import (
    application,
    database,
    dns,
    fencing,
    generic,
    identity,
    images,
    kubernetes,
    notifications,
    objectives,
    readiness,
    regions,
    storage,
    volumes,
)

__all__ = [
    "application",
    "database",
    "dns",
    "fencing",
    "generic",
    "identity",
    "images",
    "kubernetes",
    "notifications",
    "objectives",
    "readiness",
    "regions",
    "storage",
    "volumes",
]
