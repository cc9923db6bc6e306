"""The isolation's pure parts and how the Kafka checks use it: a child's end read from its exit code; a step whose
child dies fails with the reason and a fresh child runs the steps after it; where the running flow keeps its syncs."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from drtopo.checks import kafka as kafka_checks_module
from drtopo.checks.kafka import (
    GROUP_OFFSETS,
    MIRROR_FLOW,
    MIRROR_LAG,
    STEPS,
    TOPICS,
    kafka_checks,
    mirror_offset_syncs,
)
from drtopo.kafka.isolated import IsolatedError, death_reason
from drtopo.kafka.lag import OffsetSyncs
from drtopo.outputs import StackOutputs
from drtopo.report import FAIL, PASS, Report
from drtopo.settings import load_settings


def test_death_reason_names_the_signal_or_the_exit_code() -> None:
    assert death_reason(-signal.SIGSEGV) == "librdkafka crashed (SIGSEGV)"
    assert death_reason(-signal.SIGABRT) == "librdkafka crashed (SIGABRT)"
    assert death_reason(-signal.SIGKILL) == "the child was killed by SIGKILL"
    assert death_reason(3) == "the child exited with code 3 before finishing"
    assert death_reason(None) == "the child closed its pipe but did not exit"


def test_isolated_error_is_one_line_naming_where() -> None:
    exc = IsolatedError("librdkafka crashed (SIGSEGV)", "the Kafka checks")
    assert str(exc) == "librdkafka crashed (SIGSEGV) in the Kafka checks"
    assert exc.reason == "librdkafka crashed (SIGSEGV)"


def part(name: str) -> Report:
    report = Report()
    report.check(name, True, "fine", value=0, limit=0)
    report.measured[name] = 1
    return report


def test_a_crashed_step_fails_with_the_reason_and_the_steps_after_it_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts: list[int] = []

    def fake_stream(fn: Any, settings: Any, outputs: Any, max_lag: int, first: int, **kw: Any) -> Iterator[Report]:
        starts.append(first)
        for step in STEPS[first:]:
            if step == GROUP_OFFSETS:
                raise IsolatedError("librdkafka crashed (SIGSEGV)", kw["what"])
            yield part(step)

    monkeypatch.setattr(kafka_checks_module.isolated, "stream", fake_stream)
    report = Report()
    kafka_checks(report, load_settings("dr"), StackOutputs.model_construct(), 100)
    outcomes = [(c.name, c.outcome, c.detail) for c in report.checks]
    assert outcomes == [
        (TOPICS, PASS, "fine"),
        (GROUP_OFFSETS, FAIL, "librdkafka crashed (SIGSEGV) in kafka.group_offsets"),
        (MIRROR_FLOW, PASS, "fine"),
        (MIRROR_LAG, PASS, "fine"),
    ]
    assert starts == [0, 2]  # one child, and a fresh one for the steps after the crash
    assert report.measured == {TOPICS: 1, MIRROR_FLOW: 1, MIRROR_LAG: 1}
    assert report.exit_code() == 1


def test_a_child_that_always_dies_fails_every_step_and_starts_at_most_one_child_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts: list[int] = []

    def dying(fn: Any, settings: Any, outputs: Any, max_lag: int, first: int, **kw: Any) -> Iterator[Report]:
        starts.append(first)
        raise IsolatedError("no answer within 90 s (the child was killed)", kw["what"])
        yield Report()  # a generator, as the real stream is

    monkeypatch.setattr(kafka_checks_module.isolated, "stream", dying)
    report = Report()
    kafka_checks(report, load_settings("dr"), StackOutputs.model_construct(), 100)
    assert [(c.name, c.outcome) for c in report.checks] == [(s, FAIL) for s in STEPS]
    assert report.checks[-1].detail == "no answer within 90 s (the child was killed) in kafka.mirror_lag"
    assert starts == [0, 1, 2, 3]


@pytest.mark.parametrize("stack", ["dr", "prod"])
def test_the_running_flow_keeps_its_offset_syncs_on_the_standby_named_after_the_primary(stack: str) -> None:
    # The rendered properties say offset-syncs.topic.location = target; the flow is primary (prod) -> standby (dr).
    settings = load_settings(stack)
    primary_region = settings.region if settings.is_primary else settings.peer_region
    assert mirror_offset_syncs(settings, "primary:9092", "standby:9092") == OffsetSyncs(
        "standby:9092", f"mm2-offset-syncs.{primary_region}.internal"
    )
