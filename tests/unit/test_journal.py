"""The step journal: a rerun skips what an interrupted run finished and reuses its results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drtopo.failover.journal import Journal, Runner
from drtopo.report import Clock
from scripts.cli import context_from_environment


def run_steps(directory: Path, calls: list[str], fail_at: str | None = None) -> Runner:
    runner = Runner(Journal.open("promote", "dr", directory), Clock())

    def step(name: str):
        def fn() -> dict:
            calls.append(name)
            if name == fail_at:
                raise RuntimeError(f"{name} broke")
            return {"value": name.upper()}

        return fn

    for name in ("fence", "promote", "dns"):
        runner.run(name, step(name))
    return runner


def test_rerun_resumes_after_the_last_finished_step(tmp_path: Path) -> None:
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="dns broke"):
        run_steps(tmp_path, calls, fail_at="dns")
    saved = json.loads((tmp_path / "promote-dr.json").read_text())
    assert sorted(saved["steps"]) == ["fence", "promote"]

    calls.clear()
    runner = run_steps(tmp_path, calls)
    assert calls == ["dns"]
    assert runner.results["promote"] == {"value": "PROMOTE"}
    assert [t.get("resumed", False) for t in runner.timeline] == [True, True, False]


def test_closed_journal_is_kept_aside_and_the_next_run_starts_fresh(tmp_path: Path) -> None:
    calls: list[str] = []
    runner = run_steps(tmp_path, calls)
    closed = runner.journal.close()
    assert closed.is_file() and not (tmp_path / "promote-dr.json").exists()
    assert json.loads(closed.read_text())["closed_at"]
    assert not Journal.open("promote", "dr", tmp_path).resumed


def test_state_dir_prefers_explicit_then_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DRTOPO_STATE_DIR", raising=False)
    monkeypatch.setenv("DRTOPO_LAB_DIR", str(tmp_path / "lab"))
    assert context_from_environment().state_dir == tmp_path / "lab" / "journal"
    monkeypatch.setenv("DRTOPO_STATE_DIR", str(tmp_path / "state"))
    assert context_from_environment().state_dir == tmp_path / "state"
