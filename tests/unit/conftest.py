"""Fixtures for the unit suite: the program evaluated under Pulumi mocks, once per (stack, role) per session.

An evaluation takes about half a second; caching keeps `pytest tests/unit` well under a minute. Evaluations are
read-only records, so sharing them between tests is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest

from drtopo.settings import load_settings
from evaluation.mock_program import Evaluation, evaluate


@cache
def evaluated(stack: str, role: str | None = None) -> Evaluation:
    """The program for `stack` as configured, or with its role switched to `role`."""
    overrides = {"role": role} if role else None
    return evaluate(load_settings(stack, overrides=overrides))


@pytest.fixture(scope="session")
def program() -> Callable[[str, str | None], Evaluation]:
    return evaluated


@pytest.fixture(scope="session")
def prod() -> Evaluation:
    """prod as configured: the primary."""
    return evaluated("prod")


@pytest.fixture(scope="session")
def dr() -> Evaluation:
    """dr as configured: the standby."""
    return evaluated("dr")


@pytest.fixture(scope="session", params=["prod", "dr"])
def stack(request: pytest.FixtureRequest) -> Evaluation:
    """Each stack as configured (prod primary, dr standby)."""
    return evaluated(request.param)
