"""Every command run leaves a log file its report names; an unexpected exception inside a failover step is one line on
the terminal and its whole traceback in that log."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from drtopo.context import Context
from drtopo.failover import run, steps
from drtopo.failover.journal import Journal
from drtopo.failover.plan import Step, promote_plan
from drtopo.failover.results import PreflightResult
from drtopo.outputs import StackOutputs
from drtopo.report import Clock, Report
from drtopo.settings import load_settings
from scripts.cli import TERMINAL, main_guard, open_log, show_switchover


def outputs(stack: str) -> StackOutputs:
    return StackOutputs.model_construct(stack=stack, config_bucket=f"{stack}-config")


def failing_guard(sw: steps.Switchover) -> None:
    raise KeyError("no lag row for slot dr")  # a bug: nothing any step expects


def test_an_unexpected_error_in_a_step_is_one_line_and_a_traceback_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(steps.STEPS, Step.PREFLIGHT, lambda sw: PreflightResult(True, True))
    monkeypatch.setitem(steps.STEPS, Step.GUARD, failing_guard)
    ctx = Context(state_dir=tmp_path / "state", reporter=TERMINAL)
    report_path = tmp_path / "report.json"

    def command(argv: Sequence[str] | None, ctx: Context) -> int:
        sw = steps.Switchover(
            kind=steps.Kind.PROMOTE,
            target=outputs("dr"),
            peer=outputs("prod"),
            settings=load_settings("dr"),
            ctx=ctx,
            report=Report(log=str(ctx.log_path)),
        )
        journal = Journal.open("promote", "dr", ctx.state_dir)
        outcome = run.run_steps(
            sw,
            lambda sw, pre: promote_plan("dr", "prod", pre.peer_reachable),
            Clock(ctx.reporter),
            journal,
            report_path,
        )
        return show_switchover(outcome)

    code = main_guard(command, [], "promote", ctx)

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: step guard failed: 'no lag row for slot dr' (log: ")
    assert "Traceback" not in "\n".join(err)
    logs = list((tmp_path / "state" / "logs").glob("promote-*.log"))
    assert len(logs) == 1 and err[-1].endswith(f"(log: {logs[0]})")
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "KeyError: 'no lag row for slot dr'" in text
    assert "in failing_guard" in text
    document = json.loads(report_path.read_text())
    assert document["log"] == str(logs[0])
    assert not (tmp_path / "state" / "promote-dr.json").exists()  # nothing had changed: no journal kept


def test_a_bug_outside_any_step_is_one_line_naming_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def command(argv: Sequence[str] | None, ctx: Context) -> int:
        return {}["missing"]

    before = logging.getLogger().level
    code = main_guard(command, [], "validate", Context(state_dir=tmp_path, reporter=TERMINAL))
    assert logging.getLogger().level == before  # a command run in-process leaves the logging as it found it

    err = capsys.readouterr().err.strip().splitlines()
    (log,) = (tmp_path / "logs").glob("validate-*.log")
    assert code == 1 and err == [f"error: unexpected KeyError: 'missing' (log: {log})"]
    assert "Traceback (most recent call last)" in log.read_text()


def test_the_per_wal_file_commands_share_one_log_a_day(tmp_path: Path) -> None:
    ctx = Context(state_dir=tmp_path, reporter=TERMINAL)
    paths = []
    for daily in (True, True, False, False):
        opened, close = open_log(ctx, "wal-push", daily)
        logging.getLogger("scripts").info("archived one file")
        close()
        paths.append(opened.log_path)
    assert paths[0] == paths[1] and paths[2] != paths[3] and paths[0] not in paths[2:]
    assert paths[0] is not None and paths[0].read_text().count("archived one file") == 2
