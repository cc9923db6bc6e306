"""The step journal: a rerun skips what an interrupted run finished and reuses its typed results, from any machine
that reads the shared copy beside the lock; a run whose shared journal someone else wrote since stops."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from drtopo.failover.journal import Journal, Runner, S3JournalStore
from drtopo.failover.plan import SPECS, Resume, Step
from drtopo.failover.results import RESULTS, DnsResult, FenceResult, PreflightResult, PromoteResult, StepResult
from drtopo.report import Clock, Unsafe
from scripts.cli import context_from_environment

RESULT_OF = {
    Step.FENCE: FenceResult(fenced=True, method="m", proof="p"),
    Step.PROMOTE: PromoteResult(details={"postgres": "pg_promote()"}),
    Step.DNS: DnsResult(mode="signal", after="dr"),
}


def run_steps(journal: Journal, calls: list[Step], fail_at: Step | None = None) -> Runner:
    runner = Runner(journal, Clock())

    def step(name: Step):
        def fn() -> StepResult:
            calls.append(name)
            if name == fail_at:
                raise RuntimeError(f"{name} broke")
            return RESULT_OF[name]

        return fn

    for name in RESULT_OF:
        runner.run(name, step(name))
    return runner


def test_rerun_resumes_after_the_last_finished_step(tmp_path: Path) -> None:
    calls: list[Step] = []
    with pytest.raises(RuntimeError, match="dns broke"):
        run_steps(Journal.open("promote", "dr", tmp_path), calls, fail_at=Step.DNS)
    saved = json.loads((tmp_path / "promote-dr.json").read_text())
    assert sorted(saved["steps"]) == ["fence", "promote"]

    calls.clear()
    runner = run_steps(Journal.open("promote", "dr", tmp_path), calls)
    assert calls == [Step.DNS]
    promoted = runner.results[Step.PROMOTE]
    assert isinstance(promoted, PromoteResult) and promoted.details == {"postgres": "pg_promote()"}
    assert [t.get("resumed", False) for t in runner.timeline] == [True, True, False]


def test_closed_journal_is_kept_aside_and_the_next_run_starts_fresh(tmp_path: Path) -> None:
    runner = run_steps(Journal.open("promote", "dr", tmp_path), [])
    assert runner.journal is not None
    closed = Path(runner.journal.close())
    assert closed.is_file() and not (tmp_path / "promote-dr.json").exists()
    assert json.loads(closed.read_text())["closed_at"]
    assert not Journal.open("promote", "dr", tmp_path).resumed


def test_every_step_has_a_result_record_that_survives_the_journal() -> None:
    assert set(RESULTS) == set(Step) == set(SPECS)
    for step, record in RESULT_OF.items():
        assert RESULTS[step].from_dict(json.loads(json.dumps(record.as_dict()))) == record


def test_only_a_fence_that_could_not_act_is_repeated_on_resume() -> None:
    assert SPECS[Step.FENCE].resume is Resume.REPEAT_IF_UNDONE
    assert FenceResult(fenced=False, reason="unreachable", owed=True).undone()
    assert not FenceResult(fenced=True).undone()
    assert {s for s, spec in SPECS.items() if spec.resume is Resume.REPEAT} == {Step.PREFLIGHT, Step.GUARD}


def test_state_dir_prefers_explicit_then_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DRTOPO_STATE_DIR", raising=False)
    monkeypatch.setenv("DRTOPO_LAB_DIR", str(tmp_path / "lab"))
    assert context_from_environment().state_dir == tmp_path / "lab" / "journal"
    monkeypatch.setenv("DRTOPO_STATE_DIR", str(tmp_path / "state"))
    assert context_from_environment().state_dir == tmp_path / "state"


# The shared copy, on moto's S3 model in-process (the lab's emulator, without its server).
@pytest.fixture
def s3() -> Iterator[object]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-west-2")
        client.create_bucket(Bucket="cfg", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        yield client


def store(s3: object) -> S3JournalStore:
    return S3JournalStore(s3, "cfg", "promote-dr")


def test_another_machine_resumes_from_the_shared_journal(s3: object, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="dns broke"):
        run_steps(Journal.open("promote", "dr", tmp_path / "laptop-a", store(s3)), [], fail_at=Step.DNS)
    calls: list[Step] = []
    other = Journal.open("promote", "dr", tmp_path / "laptop-b", store(s3))
    assert other.resumed and other.where == "s3://cfg/journals/promote-dr.json"
    runner = run_steps(other, calls)
    assert calls == [Step.DNS]
    closed = other.close()
    assert closed.startswith("s3://cfg/journals/promote-dr.") and closed.endswith(".json")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="cfg")["Contents"]]  # type: ignore[attr-defined]
    assert "journals/promote-dr.json" not in keys and len(keys) == 1
    assert (tmp_path / "laptop-b").is_dir() and runner.results[Step.FENCE] == RESULT_OF[Step.FENCE]
    assert not Journal.open("promote", "dr", tmp_path / "laptop-c", store(s3)).resumed


def test_a_run_whose_journal_another_run_wrote_since_stops(s3: object, tmp_path: Path) -> None:
    first = Journal.open("promote", "dr", tmp_path / "a", store(s3))
    first.record(Step.FENCE, RESULT_OF[Step.FENCE], 0.1)
    taker = Journal.open("promote", "dr", tmp_path / "b", store(s3))  # took the lock with --break-lock
    taker.record(Step.PROMOTE, RESULT_OF[Step.PROMOTE], 0.2)
    with pytest.raises(Unsafe, match="written by another run since"):
        first.record(Step.PROMOTE, RESULT_OF[Step.PROMOTE], 0.3)
    two_new = [Journal.open("failback", "prod", tmp_path / d, S3JournalStore(s3, "cfg", "failback-prod")) for d in "xy"]
    two_new[0].record(Step.PREFLIGHT, PreflightResult(target_reachable=True, peer_reachable=True), 0.1)
    with pytest.raises(Unsafe):
        two_new[1].record(Step.PREFLIGHT, PreflightResult(target_reachable=True, peer_reachable=True), 0.1)


@pytest.mark.parametrize(
    ("hours_ago", "steps", "refused"),
    [(30.0, True, True), (23.0, True, False), (30.0, False, False)],
    ids=["stale", "recent", "new"],
)
def test_an_interrupted_run_older_than_the_limit_is_refused_naming_it(
    tmp_path: Path, hours_ago: float, steps: bool, refused: bool
) -> None:
    """The rule promote, failback and the cutover share: only a journal with steps done can be stale."""
    journal = Journal.open("cutover", "prod", tmp_path)
    if steps:
        Runner(journal, Clock(quiet=True)).run(Step.FENCE, lambda: RESULT_OF[Step.FENCE])
    journal.data["started_at"] = (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat()
    if not refused:
        journal.refuse_stale(24, "failover.journalMaxAgeHours", "check it")
        return
    with pytest.raises(Unsafe) as stale:
        journal.refuse_stale(24, "failover.journalMaxAgeHours", "check the database")
    message = str(stale.value)
    assert message.startswith(f"the interrupted cutover of prod started {journal.data['started_at']} (30.0 h ago")
    assert f"beyond failover.journalMaxAgeHours 24; journal {tmp_path / 'cutover-prod.json'})" in message
    assert message.endswith("check the database, then rerun with --restart")
