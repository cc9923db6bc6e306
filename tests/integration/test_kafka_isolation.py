"""A crash of the Kafka client can no longer kill a run: real SIGSEGVs, hangs and exceptions in the isolated child
become one-line reasons, and a crash inside the Kafka checks becomes a failed check with the others still reported.

No case here restarts a broker to "show" validate surviving NOT_COORDINATOR: nothing can show the coordinator
actually answered it (the lab's one-broker cluster often has its offsets loaded by the time it is ready again, and
neither the report nor librdkafka says which answer came), so such a case passed whether or not the fault happened.
What contains the crash that error used to cause (a SIGSEGV in the client) is shown below with real SIGSEGVs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drtopo.checks.kafka import GROUP_OFFSETS, MIRROR_LAG, TOPICS, kafka_checks
from drtopo.kafka import isolated
from drtopo.outputs import load_outputs
from drtopo.report import FAIL, PASS, Report
from drtopo.settings import load_settings
from lab.core import Lab

REPO = Path(__file__).resolve().parents[2]


def yield_then_segfault() -> Iterator[int]:
    yield 1
    os.kill(os.getpid(), signal.SIGSEGV)
    yield 2


def hang() -> Iterator[int]:
    yield 1
    time.sleep(60)
    yield 2


def fail() -> Iterator[int]:
    raise ValueError("no such partition\nsecond line")
    yield 0  # a generator, as stream expects


def test_a_segfault_in_the_child_becomes_a_one_line_reason_after_the_items_it_sent() -> None:
    got: list[int] = []
    with pytest.raises(isolated.IsolatedError) as caught:
        got.extend(isolated.stream(yield_then_segfault, timeout=30, what="a test function"))
    assert got == [1]
    assert str(caught.value) == "librdkafka crashed (SIGSEGV) in a test function"


def test_a_hung_child_is_killed_at_its_deadline() -> None:
    got: list[int] = []
    # The deadline also covers the spawned child's start-up (imports included): 10 s, not 2, so a loaded machine does
    # not miss the first item; the hang (60 s) is far beyond it.
    with pytest.raises(isolated.IsolatedError, match=r"^no answer within 10 s \(the child was killed\) in a hang$"):
        got.extend(isolated.stream(hang, timeout=10, what="a hang"))
    assert got == [1]


def test_an_exception_in_the_child_crosses_as_its_first_line() -> None:
    with pytest.raises(isolated.IsolatedError, match=r"^raised ValueError: no such partition in a failing function$"):
        list(isolated.stream(fail, timeout=30, what="a failing function"))


class CrashingLimit(int):
    """A mirror-lag limit whose comparison kills the process it runs in with SIGSEGV: only the Kafka checks' child
    compares it (`behind <= max_lag` asks this reflected method first), during the mirror-lag step."""

    def __ge__(self, other: object) -> bool:
        os.kill(os.getpid(), signal.SIGSEGV)
        return False


@pytest.mark.lab
def test_a_crash_in_the_kafka_checks_fails_that_check_and_keeps_the_others(lab: Lab) -> None:
    settings = load_settings("dr", lab.project_dir)
    outputs = load_outputs(lab.dr.outputs_path, "dr")
    report = Report()
    start = time.monotonic()
    kafka_checks(report, settings, outputs, CrashingLimit(100))
    print(f"\nKafka checks with a crash in the last step: {time.monotonic() - start:.2f} s")
    outcomes = {c.name: (c.outcome, c.detail) for c in report.checks}
    assert outcomes[TOPICS][0] == PASS and outcomes[GROUP_OFFSETS][0] == PASS
    assert outcomes[MIRROR_LAG] == (FAIL, "librdkafka crashed (SIGSEGV) in kafka.mirror_lag")
    assert report.exit_code() == 1
