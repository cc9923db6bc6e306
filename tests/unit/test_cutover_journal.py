"""A cutover's steps through the failover journal (drtopo/backup/restore.py JournalledSteps over
drtopo/failover/journal.py): each step recorded as it ends, a rerun reusing the records of the steps done and
running only the rest, the re-apply passes' keys read back as one set, a journal holding no mutating step, and
--restart of a cutover that had swapped in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drtopo.backup.restore import CUTOVER_RESULTS, JournalledSteps, _restart
from drtopo.database.pitr.cutover import CUTOVER_MUTATING, CUTOVER_PLAN, CutoverStep, ReapplyOutcome, undone_advice
from drtopo.failover.journal import Journal
from drtopo.outputs import SelfManagedPostgres
from drtopo.report import Clock, Report
from tests.unit.test_database_platform import outputs


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


def test_restart_after_the_swap_drops_the_journal_and_cuts_nothing_over_again(tmp_path: Path) -> None:
    """After its swap the service runs on the interrupted run's restored instance: --restart drops the journal, leaves
    that instance serving and names what the run left undone, each with what to do by hand."""
    steps = JournalledSteps(_open(tmp_path), Clock(quiet=True), Report())
    restored = tmp_path / "pitr-20261202T032359Z"
    steps.run(CutoverStep.RESTORE, lambda: {"data_dir": str(restored), "target_time": "2026-12-02T03:23:59+00:00"})
    for name in (CutoverStep.REAPPLY, CutoverStep.FENCE, CutoverStep.REAPPLY_FENCED, CutoverStep.SWAP):
        steps.run(name, dict)
    server = SelfManagedPostgres(
        bin_dir="/usr/lib/postgresql/15/bin",
        data_dir=str(tmp_path / "prod"),
        archive_dir=str(tmp_path / "archive"),
        base_backup_dir=str(tmp_path / "base"),
    )
    report = Report()
    lines = _restart(_open(tmp_path), outputs("local:prod", server), server, report, Clock(quiet=True))
    assert lines is not None and not (tmp_path / "cutover-prod.json").exists(), "the journal is dropped"
    assert "had swapped the restored instance in, so nothing is cut over again" in lines[0]
    assert lines[0].endswith("steps it left undone: writable, standby, base-backup")
    assert "check that the database takes writes" in lines[1]
    assert "rebuild dr's standby from the restored server" in lines[1]
    assert "python -m scripts.wal base --stack prod DIR" in lines[1]
    assert report.checks[-1].name == "restart" and report.checks[-1].ok
    assert report.measured["restarted"]["steps_done"] == ["fence", "reapply", "reapply-fenced", "restore", "swap"]
    assert not _open(tmp_path).resumed, "the next run starts a new journal"


def test_what_is_left_undone_after_a_swap_is_said_per_step() -> None:
    assert undone_advice([], "prod", "dr") == "nothing"
    only = undone_advice(["base-backup"], "prod", "dr")
    assert only.startswith("take a base backup of the new timeline") and "standby" not in only
