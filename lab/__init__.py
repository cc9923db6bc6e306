"""The local DR lab: real PostgreSQL, Kafka with MirrorMaker 2 and an AWS emulator on loopback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.core import Lab

__all__ = ["Lab"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m lab.service` and lab.process stay light and importing `lab` starts no heavy imports.
    if name == "Lab":
        from lab.core import Lab

        return Lab
    raise AttributeError(name)
