"""The primary lease as the program declares it (drtopo:fencing.mode `lease`): the guard in this stack's cluster
(components/guard.py), this stack's own lease store (components/lease_store.py: an unreplicated bucket in its
region) and, in the one stack that owns it, the witness store (components/witness.py). With mode `off` nothing is
declared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from components.guard import LeaseGuard, LeaseGuardArgs
from components.lease_store import LeaseStore, LeaseStoreArgs
from components.witness import LeaseWitness, LeaseWitnessArgs
from drtopo.settings import FencingMode, Settings


def declare_fencing(
    settings: Settings, outputs: Mapping[str, pulumi.Input[Any]], cluster: pulumi.ResourceOptions
) -> dict[str, Any]:
    """Declare the guard (through `cluster`, this stack's Kubernetes provider), this stack's lease store (with its
    backup key, `kmsKeyArn` of `outputs`) and the witness this stack owns; returns what was declared by name (empty
    with mode `off`)."""
    if settings.fencing.mode is not FencingMode.LEASE:
        return {}
    declared: dict[str, Any] = {
        "guard": LeaseGuard("lease-guard", LeaseGuardArgs(settings, outputs), cluster),
        "store": LeaseStore("lease-store", LeaseStoreArgs(settings, outputs["kmsKeyArn"])),
    }
    if settings.fencing.witness_stack == settings.stack:
        declared["witness"] = LeaseWitness("lease-witness", LeaseWitnessArgs(settings))
    return declared
