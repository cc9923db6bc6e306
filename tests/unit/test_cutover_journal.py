"""A cutover's steps through the failover journal (drtopo/backup/restore.py JournalledSteps over
drtopo/failover/journal.py): each step recorded as it ends, a rerun reusing the records of the steps done and
running only the rest, the re-apply passes' keys read back as one set, and a journal holding no mutating step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drtopo.backup.restore import CUTOVER_RESULTS, JournalledSteps
from drtopo.database.pitr.cutover import CUTOVER_MUTATING, CUTOVER_PLAN, CutoverStep, ReapplyOutcome
from drtopo.failover.journal import Journal
from drtopo.report import Clock, Report


def _open(folder: Path) -> Journal:
    return Journal.open("cutover", "prod", folder, None, CUTOVER_RESULTS)


def test_a_rerun_reuses_the_steps_done_and_runs_only_the_rest(tmp_path: Path) -> None:
    ran: list[str] = []

    def step(name: str, record: dict[str, Any]):
        def fn() -> dict[str, Any]:
            ran.append(name)
            return record

        return fn

    first = JournalledSteps(_open(tmp_path), Clock(quiet=True), Report())
    first.run(CutoverStep.RESTORE, step("restore", {"target_time": "2026-12-02T03:23:59+00:00", "damage_xids": [740]}))
    first.run(CutoverStep.REAPPLY, step("reapply", {"copied_keys": {"t": [1, 2]}}))
    # The process dies here; the rerun opens the same journal.
    journal = _open(tmp_path)
    assert journal.resumed and journal.data["operation"] == "cutover"
    report = Report()
    again = JournalledSteps(journal, Clock(quiet=True), report)
    restored = again.run(CutoverStep.RESTORE, step("restore again", {}))
    assert restored == {"target_time": "2026-12-02T03:23:59+00:00", "damage_xids": [740]}
    assert again.run(CutoverStep.REAPPLY, step("reapply again", {})) == {"copied_keys": {"t": [1, 2]}}
    again.run(CutoverStep.FENCE, step("fence", {"fenced_at": 1.0}))
    assert ran == ["restore", "reapply", "fence"], "nothing done twice"
    assert [c.name for c in report.checks] == ["cutover step restore", "cutover step reapply"]
    assert again.finished() == {"restore", "reapply", "fence"}
    assert [t.get("resumed", False) for t in again.runner.timeline] == [True, True, False]


def test_a_forgotten_step_runs_again(tmp_path: Path) -> None:
    steps = JournalledSteps(_open(tmp_path), Clock(quiet=True), Report())
    steps.run(CutoverStep.REAPPLY_FENCED, lambda: {"missing": {"t": [3]}})
    steps.forget(CutoverStep.REAPPLY_FENCED)
    assert not _open(tmp_path).done(CutoverStep.REAPPLY_FENCED)


def test_the_passes_keys_read_back_from_json_are_one_set_per_table() -> None:
    passes = [
        {
            "copied_keys": {"t": [1, 2], "c": [[1, "a"]]},
            "tables": [{"table": "t", "excluded_damage": 5, "deleted_kept": 1}],
        },
        {
            "copied_keys": {"t": [2, 3], "c": [[1, "a"]]},
            "tables": [{"table": "t", "excluded_damage": 4, "deleted_kept": 2}],
        },
    ]
    outcome = ReapplyOutcome(passes, {"proof": "refused"}, 2.0, {}, 1.5)
    m = outcome.measured()
    assert m["rows_reapplied_per_table"] == {"t": 3, "c": 1}
    assert m["rows_excluded_as_damage"] == {"t": 5}
    assert m["rows_deleted_after_t_kept"] == {"t": 2}
    assert m["fenced_from"] == 1.5 and all("copied_keys" not in p for p in m["passes"])


def test_every_step_but_the_wait_changes_something() -> None:
    assert CUTOVER_PLAN[0] is CutoverStep.RESTORE and CUTOVER_PLAN[-1] is CutoverStep.BASE_BACKUP
    assert set(CUTOVER_PLAN) - CUTOVER_MUTATING == {CutoverStep.WRITABLE}
