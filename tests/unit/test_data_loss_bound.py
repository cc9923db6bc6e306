"""The data-loss bound of a promotion whose old primary does not answer (drtopo.database.loss_bound): the record of
the standby's last contact in its server log, the bound's kind, that waiting does not change it, the RDS rule over
CloudWatch's ReplicaLag datapoints (pure, and through `RdsDatabase.lag` on moto's CloudWatch model), and what
promote's guard does with each kind.

The log lines are the ones a PostgreSQL 15 standby wrote on the lab (log_line_prefix '%m [%p] ') around a SIGKILL of
its primary, a clean shutdown of it, and a receiver timeout (the message of walreceiver.c).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import boto3
import pytest
from moto import mock_aws

from drtopo.context import Context
from drtopo.database.loss_bound import (
    Bound,
    BoundKind,
    LiveReceiver,
    StandbyState,
    StreamEnd,
    cloudwatch_bound,
    last_stream_end,
    stream_bound,
)
from drtopo.database.rds import RdsDatabase
from drtopo.database.replication import Lag
from drtopo.failover.steps import Kind, Switchover, guard
from drtopo.outputs import StackOutputs
from drtopo.report import Unsafe
from drtopo.settings import load_settings

START = "2026-12-02 09:28:10.700 UTC [12620] LOG:  starting PostgreSQL 15.14 on x86_64-pc-linux-gnu"
STREAMING = "2026-12-02 09:28:11.025 UTC [12626] LOG:  started streaming WAL from primary at 0/3000000 on timeline 1"
KILLED = (
    "2026-12-02 09:28:17.324 UTC [12626] FATAL:  could not receive data from WAL stream: server closed the "
    "connection unexpectedly"
)
REFUSED = (
    "2026-12-02 09:28:22.330 UTC [13019] FATAL:  could not connect to the primary server: connection to server at "
    '"127.0.0.1", port 55431 failed: Connection refused'
)
REFUSED_LATER = REFUSED.replace("09:28:22.330", "09:48:22.330").replace("13019", "19019")
WAITING = "2026-12-02 09:28:22.331 UTC [12625] LOG:  waiting for WAL to become available at 0/3019480"
CLEAN_STOP = "2026-12-02 09:28:17.324 UTC [12626] LOG:  replication terminated by primary server"
TIMED_OUT = "2026-12-02 09:29:17.324 UTC [12626] FATAL:  terminating walreceiver due to timeout"

KILLED_AT = datetime(2026, 12, 2, 9, 28, 17, 324000, tzinfo=UTC)
LAST_COMMIT = datetime(2026, 12, 2, 9, 28, 17, 301000, tzinfo=UTC)
STATE = StandbyState("0/3019468", "0/3019468", 0, LAST_COMMIT)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([START, STREAMING, KILLED, REFUSED, WAITING, REFUSED_LATER], StreamEnd(KILLED_AT, True, KILLED)),
        ([START, STREAMING, CLEAN_STOP, REFUSED], StreamEnd(KILLED_AT, True, CLEAN_STOP)),
        ([START, STREAMING, TIMED_OUT], StreamEnd(KILLED_AT + timedelta(minutes=1), False, TIMED_OUT)),
        ([START, STREAMING], None),  # streaming: the live view says more
        ([KILLED, START, STREAMING], None),  # an end before the server started again is history
        ([KILLED, STREAMING], None),  # the receiver reconnected
        ([START, STREAMING, REFUSED], None),  # no end recorded in what was read
        (["could not receive data from WAL stream without a time"], None),
    ],
    ids=["sigkill", "clean-stop", "timeout", "streaming", "restarted", "reconnected", "no-end", "no-prefix"],
)
def test_the_standby_log_records_how_and_when_the_stream_ended(lines: list[str], expected: StreamEnd | None) -> None:
    assert last_stream_end(lines, UTC) == expected


def test_log_times_are_read_in_the_servers_log_timezone() -> None:
    end = last_stream_end([KILLED.replace(" UTC ", " CET ")], ZoneInfo("Europe/Paris"))
    assert end is not None and end.at == KILLED_AT - timedelta(hours=1)


def test_after_a_crash_the_bound_is_the_window_to_the_stream_end_and_waiting_does_not_change_it() -> None:
    end = last_stream_end([START, STREAMING, KILLED, REFUSED], UTC)
    at_once = stream_bound(STATE, end, None, KILLED_AT + timedelta(seconds=2))
    twenty_minutes_later = stream_bound(STATE, end, None, KILLED_AT + timedelta(minutes=20))

    assert at_once == twenty_minutes_later
    assert at_once.kind is BoundKind.STOPPED
    assert at_once.seconds == pytest.approx(0.023)
    assert at_once.last_contact == KILLED_AT
    assert "last contact 2026-12-02T09:28:17.324000+00:00" in at_once.detail
    assert "standby received 0/3019468, replayed 0/3019468" in at_once.detail


def test_wal_received_but_not_replayed_is_reported_as_kept() -> None:
    state = StandbyState("0/3019468", "0/3010000", 37992, LAST_COMMIT - timedelta(seconds=1))
    bound = stream_bound(state, StreamEnd(KILLED_AT, True, KILLED), None, KILLED_AT)
    # The unreplayed WAL may hold later commits; the bound from the last replayed one overstates, never understates.
    assert bound.seconds == pytest.approx(1.023)
    assert "37992 bytes still to replay, kept on promotion" in bound.detail


def test_a_stream_that_timed_out_leaves_the_bound_unknown_with_its_measurable_part() -> None:
    bound = stream_bound(STATE, StreamEnd(KILLED_AT + timedelta(minutes=1), False, TIMED_OUT), None, KILLED_AT)
    assert bound.kind is BoundKind.UNKNOWN
    assert bound.seconds == pytest.approx(60.023)
    assert "a cut-off primary may have gone on committing" in bound.detail


def test_a_receiver_still_streaming_means_the_primary_is_alive_and_only_cut_off_from_here() -> None:
    live = LiveReceiver("streaming", KILLED_AT - timedelta(seconds=0.004), KILLED_AT, 0)
    bound = stream_bound(STATE, None, live, KILLED_AT + timedelta(minutes=20))
    assert bound.kind is BoundKind.UNKNOWN
    assert bound.seconds == pytest.approx(0.004)
    assert "still streams from the primary" in bound.detail
    behind = stream_bound(STATE, None, LiveReceiver("streaming", KILLED_AT, KILLED_AT, 8192), KILLED_AT)
    assert behind.seconds == pytest.approx(0.023)  # it lacks what the sender reported: from its last commit


def test_without_a_record_the_age_of_the_last_commit_is_all_there_is_and_it_says_it_grows() -> None:
    first = stream_bound(STATE, None, None, KILLED_AT)
    later = stream_bound(STATE, None, None, KILLED_AT + timedelta(minutes=20))
    assert first.kind is later.kind is BoundKind.NO_RECORD
    assert later.seconds - first.seconds == pytest.approx(1200)  # type: ignore[operator]
    assert "grows while you wait" in BoundKind.NO_RECORD
    no_commit = stream_bound(
        StandbyState("0/3000000", "0/3000000", 0, None), StreamEnd(KILLED_AT, True, KILLED), None, KILLED_AT
    )
    assert no_commit.seconds is None and "none replayed since the standby started" in no_commit.detail


MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def series(*lags: float) -> list[tuple[datetime, float]]:
    return [(T0 + i * MINUTE, lag) for i, lag in enumerate(lags)]


@pytest.mark.parametrize(
    ("points", "seconds", "silent"),
    [
        # Shipping with 1-3 s of delay, then the source dies: ReplicaLag grows one minute per minute.
        (series(1, 2, 1, 3, 2, 62, 122, 182, 242), 3, 4),
        # The same seen 20 minutes later: more silent datapoints, the same bound.
        (series(1, 2, 1, 3, 2, *(62 + 60 * i for i in range(24))), 3, 24),
        # Still shipping (the source is only cut off from here): the recent delay.
        (series(0, 1, 0, 2, 1, 0), 2, 0),
        # One spike while shipping counts: the largest of the last datapoints before the silence.
        (series(0, 0, 40, 1, 0, 61, 121), 40, 2),
        # Silent over the whole window: the oldest datapoint's lag, which overstates the loss.
        (series(300, 360, 420, 480), 300, 3),
    ],
    ids=["died", "twenty-minutes-later", "shipping", "spike", "silent-window"],
)
def test_cloudwatch_bound_is_the_lag_before_it_grew_with_the_clock(
    points: list[tuple[datetime, float]], seconds: float, silent: int
) -> None:
    bound = cloudwatch_bound(points, 60)
    assert bound.seconds == seconds
    assert bound.kind is BoundKind.UNKNOWN  # CloudWatch cannot tell a stopped source from a cut-off one
    assert (f"then {silent} datapoints growing with the clock" in bound.detail) == (silent > 0)


def test_cloudwatch_bound_without_datapoints_is_unknown() -> None:
    bound = cloudwatch_bound([], 60)
    assert bound.seconds is None and bound.kind is BoundKind.UNKNOWN and "no ReplicaLag datapoints" in bound.detail


# ---- what promote's guard does with each kind of bound -------------------------------------------------------------


@dataclass
class Said:
    """The reporter the command would pass: what the guard told the operator."""

    warnings: list[str] = field(default_factory=list)

    def progress(self, text: str) -> None: ...

    def info(self, text: str) -> None: ...

    def warning(self, text: str) -> None:
        self.warnings.append(text)


@dataclass(frozen=True)
class Measured:
    """A database whose lag is the one given (the guard's input; how it is measured is tested above and on the lab)."""

    measured: Lag

    def lag(self, primary: object) -> Lag:
        return self.measured

    def reachable(self) -> bool:
        return False


def run_guard(bound: Bound, accept_data_loss: bool = False) -> tuple[Switchover, Said]:
    said = Said()
    settings = load_settings("dr")
    target, peer = (SimpleNamespace(stack=s) for s in ("dr", "prod"))
    sw = Switchover(Kind.PROMOTE, target, peer, settings, Context(reporter=said), accept_data_loss)  # type: ignore[arg-type]
    sw.db = lambda outputs: Measured(Lag.unreachable(bound))  # type: ignore[method-assign]
    guard(sw)
    return sw, said


RPO = load_settings("dr").objectives.region_failure.rpo_seconds
CONTACT = KILLED_AT


@pytest.mark.parametrize(
    ("bound", "refused", "warned"),
    [
        (Bound(0.023, BoundKind.STOPPED, CONTACT, "stopped"), False, False),
        (Bound(RPO + 1, BoundKind.STOPPED, CONTACT, "stopped, long window"), True, False),
        (Bound(None, BoundKind.STOPPED, CONTACT, "no commit replayed"), True, False),
        # Unknown: judged on its measurable part, the rest said, never a refusal by itself.
        (Bound(0.5, BoundKind.UNKNOWN, CONTACT, "timed out"), False, True),
        (Bound(RPO + 1, BoundKind.UNKNOWN, CONTACT, "timed out long after"), True, True),
        (Bound(RPO + 1, BoundKind.NO_RECORD, None, "no record"), True, False),
    ],
    ids=["stopped", "stopped-beyond", "stopped-no-commit", "unknown", "unknown-beyond", "no-record-beyond"],
)
def test_the_guard_refuses_on_the_measurable_part_and_says_the_rest(bound: Bound, refused: bool, warned: bool) -> None:
    if refused:
        with pytest.raises(Unsafe, match=r"^replica lag of dr is .* beyond the region-failure RPO"):
            run_guard(bound)
        sw, said = run_guard(bound, accept_data_loss=True)
        assert "accepted with --accept-data-loss" in sw.report.checks[-1].detail
    else:
        sw, said = run_guard(bound)
    measured = sw.report.measured
    assert measured["replica_lag_bound"] == bound.kind
    assert measured["replica_lag_seconds"] == bound.seconds
    assert measured["replica_lag_last_contact"] == (CONTACT.isoformat() if bound.last_contact else None)
    assert measured["replica_lag_source"] == f"primary unreachable: {bound.kind}"
    assert bool(said.warnings) == warned
    assert ("not measurable: writes prod may still take" in sw.report.checks[-1].detail) == warned


# ---- RDS: the rule over CloudWatch, on moto's CloudWatch model in-process ------------------------------------------


def rds_outputs(stack: str, region: str) -> StackOutputs:
    """An RDS stack whose endpoint does not answer (port 1 on loopback refuses at once)."""
    return StackOutputs(
        stack=stack,
        role="standby" if stack == "dr" else "primary",
        region=region,
        peer_region="us-east-1",
        peer_stack="prod",
        db_instance_id=f"{stack}-db",
        db_arn=f"arn:aws:rds:{region}:123456789012:db:{stack}-db",
        db_address="127.0.0.1",
        db_port=1,
        db_name="app",
        db_user="app",
        kms_key_arn=f"arn:aws:kms:{region}:123456789012:key/k",
        dump_bucket="d",
        wal_bucket="w",
        config_bucket="c",
        audit_bucket="a",
        hosted_zone_id="Z1",
        record_name="app.example.com",
        set_identifier=stack,
        health_check_id="h",
        failover="SECONDARY",
        kafka_bootstrap="127.0.0.1:9092",
        peer_kafka_bootstrap="127.0.0.1:9093",
        service_url="http://127.0.0.1:8080",
        namespace="app",
    )


def test_an_rds_replica_whose_source_went_silent_is_bounded_by_its_lag_before_the_silence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-west-2")
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        lags = [1, 2, 1, 3, 2, 62, 122, 182, 242]
        for i, lag in enumerate(lags):
            cloudwatch.put_metric_data(
                Namespace="AWS/RDS",
                MetricData=[
                    {
                        "MetricName": "ReplicaLag",
                        "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "dr-db"}],
                        "Timestamp": now - (len(lags) - 1 - i) * MINUTE,
                        "Value": lag,
                        "Unit": "Seconds",
                    }
                ],
            )
        replica = RdsDatabase(rds_outputs("dr", "us-west-2"))

        lag = replica.lag(RdsDatabase(rds_outputs("prod", "us-east-1")))

    assert lag.seconds == 3
    assert lag.bound == BoundKind.UNKNOWN
    assert lag.source == f"primary unreachable: {BoundKind.UNKNOWN}"
    assert "then 4 datapoints growing with the clock" in lag.detail
