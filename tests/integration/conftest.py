"""Fixtures over the real lab: one Lab for the whole integration session, its env applied to os.environ.

`lab` starts it in a temporary root (mode 0755 so the postgres user can enter) and always stops it, even when
`up` or a test fails; `fresh_pg` gives a test a freshly built PostgreSQL pair (prod primary, dr standby); `prod` the
prod outputs with prod an archiving primary; `restored` the data directories of restored instances to clean up.

The skip gate: an integration test that skips proves nothing, so a session in which any skipped fails (exit 1, the
skipped tests listed with their reasons), unless the test's node id is in ALLOWED_SKIPS. That list is empty on
purpose and must stay so in the repository: a test that cannot run on the lab is fixed or removed, not skipped; add
an entry only in a local, uncommitted change while investigating one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bench.switchover import LIVE_WRITERS
from drtopo.database.connect import connect
from drtopo.database.pitr.recovery import stop_instance
from drtopo.outputs import StackOutputs, load_outputs
from lab.core import Lab
from scripts.drill.loadgen import stop_all as drill_load_stop_all

# Node ids (as pytest prints them, e.g. "tests/integration/test_x.py::test_y") allowed to skip. Must be empty on CI.
ALLOWED_SKIPS: frozenset[str] = frozenset()
INTEGRATION_DIR = Path(__file__).resolve().parent


def skipped_integration_tests(terminalreporter: pytest.TerminalReporter) -> list[tuple[str, str]]:
    """(node id, reason) of every skipped test under tests/integration that ALLOWED_SKIPS does not name."""
    found: list[tuple[str, str]] = []
    for report in terminalreporter.stats.get("skipped", []):
        path = Path(str(terminalreporter.config.rootpath), report.nodeid.split("::", 1)[0]).resolve()
        if INTEGRATION_DIR not in path.parents or report.nodeid in ALLOWED_SKIPS:
            continue
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        found.append((report.nodeid, reason))
    return found


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    skipped = skipped_integration_tests(terminalreporter)
    if skipped:
        terminalreporter.section("integration tests skipped (not allowed)", red=True, bold=True)
        for nodeid, reason in skipped:
            terminalreporter.line(f"{nodeid}: {reason}", red=True)
        terminalreporter.line(
            f"{len(skipped)} integration test(s) skipped: the session fails (an empty ALLOWED_SKIPS in"
            " tests/integration/conftest.py: fix or remove the test, never skip it)",
            red=True,
            bold=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and skipped_integration_tests(reporter) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def make_root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    root = make_root("drtopo-lab-")
    the_lab = Lab(root / "lab")
    saved = dict(os.environ)
    try:
        the_lab.up()
        os.environ.update(the_lab.env())
        yield the_lab
    finally:
        os.environ.clear()
        os.environ.update(saved)
        the_lab.down()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_pg(lab: Lab) -> Lab:
    lab.reset_postgres()
    return lab


@pytest.fixture(autouse=True)
def no_load_left_running() -> Iterator[None]:
    """Whatever a test started writing (and did not stop because it failed) stops with it."""
    yield
    drill_load_stop_all()
    for writer in list(LIVE_WRITERS):
        writer.stop()


# The point-in-time restore tests' (test_pitr, test_wal_bucket): prod as the archiving primary; restored instances
# stopped and removed afterwards.
@pytest.fixture
def prod(lab: Lab) -> StackOutputs:
    """The prod stack's outputs, with prod the archiving primary (rebuilt if an earlier test left it otherwise)."""
    outputs = load_outputs(lab.prod.outputs_path, "prod")
    try:
        with connect(outputs) as conn:
            primary = not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except psycopg.OperationalError:
        primary = False
    if not primary or outputs.self_managed is None:
        lab.reset_postgres()
        outputs = load_outputs(lab.prod.outputs_path, "prod")
    return outputs


@pytest.fixture
def restored(prod: StackOutputs) -> Iterator[list[Path]]:
    """Data directories of restored instances; each is stopped and removed afterwards."""
    dirs: list[Path] = []
    yield dirs
    assert prod.self_managed is not None
    for data_dir in dirs:
        stop_instance(prod.self_managed, data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
