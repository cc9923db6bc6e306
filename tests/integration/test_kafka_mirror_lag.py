"""MirrorMaker lag from offset syncs on the lab, where end-offset subtraction goes wrong: the source trims records
(delete_records, as retention does) that MirrorMaker never copied. The lag counts only the records still to copy,
reaches 0 once they are copied although the two topics' end offsets now differ for good, and the validate check
`kafka.mirror_lag.<topic>` reports it in records with the age of the oldest record not yet copied.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from drtopo.checks.kafka import kafka_checks, mirror_offset_syncs
from drtopo.kafka.admin import Partition, end_offsets, watermarks
from drtopo.kafka.lag import MirrorLag, measure_mirror_lag
from drtopo.outputs import load_outputs
from drtopo.report import Report
from drtopo.settings import load_settings
from lab.core import Lab

pytestmark = pytest.mark.lab

# Only this module writes to this topic: the lab's other tests keep their aligned offsets.
TOPIC = "DistributionFailed"
TP = Partition(TOPIC, 0)


def produce(bootstrap: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(count):
        producer.produce(TOPIC, key=f"k{i}".encode(), value=b"{}", partition=0)
    assert producer.flush(15) == 0


def test_lag_after_the_source_trims_records_never_copied(lab: Lab) -> None:
    settings = load_settings("dr", lab.project_dir)
    source, target = lab.prod.kafka.bootstrap, lab.dr.kafka.bootstrap
    syncs = mirror_offset_syncs(settings, source, target)
    max_lag = settings.kafka.mirror.offset_lag_max

    def lag() -> MirrorLag:
        return measure_mirror_lag(source, target, [TOPIC], syncs, max_lag)

    def caught_up(timeout: float = 60) -> MirrorLag:
        deadline = time.monotonic() + timeout
        while (now := lag()).records[TOPIC]:
            assert time.monotonic() < deadline, f"MirrorMaker did not catch up: {now}"
            time.sleep(0.5)
        return now

    def end_subtraction() -> int:
        return end_offsets(source, [TOPIC])[TP] - end_offsets(target, [TOPIC])[TP]

    produce(source, 20)
    caught_up()
    lab.stop_mirrormaker()
    try:
        produce(source, 50)
        time.sleep(1.0)
        stopped = lag()
        assert stopped.records[TOPIC] == 50 and end_subtraction() == 50
        assert stopped.seconds[TOPIC] is not None and stopped.seconds[TOPIC] >= 1.0

        high = watermarks(source, [TOPIC])[TP][1]
        cut = TopicPartition(TOPIC, 0, high - 20)
        admin = AdminClient({"bootstrap.servers": source})  # referenced until its future is done
        admin.delete_records([cut], request_timeout=10)[cut].result(timeout=30)
        assert watermarks(source, [TOPIC])[TP] == (high - 20, high)
        trimmed = lag()
        # 30 of the 50 were trimmed before MirrorMaker copied them: lost, not lag. End subtraction still says 50.
        assert trimmed.records[TOPIC] == 20 and end_subtraction() == 50
    finally:
        lab.start_mirrormaker()
    after = caught_up()
    assert after.records[TOPIC] == 0 and after.seconds[TOPIC] == 0.0
    assert end_subtraction() == 30  # the target will never hold the trimmed records: end subtraction is stuck
    produce(source, 5)  # later records are still counted and copied
    assert caught_up().records[TOPIC] == 0
    print(
        f"\nmirror lag of {TOPIC} (records, seconds): stopped {stopped.records[TOPIC]}, {stopped.seconds[TOPIC]:.1f}; "
        f"trimmed {trimmed.records[TOPIC]}, {trimmed.seconds[TOPIC]:.1f}; after the restart {after.records[TOPIC]} "
        f"(end-offset subtraction: 50, 50, {end_subtraction()})"
    )

    report = Report()
    kafka_checks(report, settings, load_outputs(lab.dr.outputs_path, "dr"), 100)
    check = next(c for c in report.checks if c.name == f"kafka.mirror_lag.{TOPIC}")
    assert (check.outcome, check.value, check.limit) == ("pass", 0, 100)
    assert check.detail.endswith(": caught up")
    assert report.measured["mirror_lag_seconds"][TOPIC] == 0.0
