"""Keeps the tiers apart: unit and policy tests read the repository's stack files, even while the integration
session's lab has pointed DRTOPO_PROJECT_DIR (read at each call) at its own project copy."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def repository_stack_files(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "integration" not in request.path.parts:
        monkeypatch.delenv("DRTOPO_PROJECT_DIR", raising=False)
