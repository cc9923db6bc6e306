"""Keeps the tiers apart: unit and policy tests read the repository's stack files, even while the integration
session's lab has pointed DRTOPO_PROJECT_DIR (read at each call) at its own project copy. Also keeps the garbage
collector from rescanning what lives for the whole session."""

from __future__ import annotations

import gc

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once collected, the imported modules (Pulumi's providers alone are hundreds of thousands of objects) live until
    the session ends: frozen, the collector no longer walks them, and it runs less often than its default (every 700
    allocations). The unit and policy tiers spent about a third of their time in it. Nothing is left uncollected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


@pytest.fixture(autouse=True)
def repository_stack_files(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "integration" not in request.path.parts:
        monkeypatch.delenv("DRTOPO_PROJECT_DIR", raising=False)
