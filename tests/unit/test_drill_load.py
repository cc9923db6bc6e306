"""The drill's load profile and the client-visible RTO: settings levels, phases, rates, the table and the picture."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from drtopo.settings import SettingsError, load_settings, settings_from_config
from scripts.drill.loadgen import Ack, LoadStats, RowWriter, per_second, stop_all
from scripts.drill.measured import Measured
from scripts.drill.report import ScenarioResult, print_table, timeline_figure
from scripts.drill.run import achieved_rate
from scripts.drill.scenarios import BY_NAME
from scripts.drill.scenarios.phases import rto_phases

REGION_PHASES = BY_NAME["region-failure"].rto_phases


def test_the_default_load_is_a_service_and_light_is_smaller() -> None:
    load = load_settings("prod").drill.load
    default, light, heavy = load.level("default"), load.level("light"), load.level("heavy")
    assert default.write_rate >= 500 and default.kafka_rate >= 2000 and default.seed_rows >= 1_000_000
    assert light.write_rate < default.write_rate < heavy.write_rate
    assert light.seed_rows < default.seed_rows <= heavy.seed_rows
    with pytest.raises(SettingsError, match="expected one of light, default, heavy"):
        load.level("huge")


def test_a_stack_sets_its_own_load_and_bad_values_name_the_key() -> None:
    prod = load_settings("prod")
    config = {
        "aws:region": prod.region,
        "drtopo:role": "primary",
        "drtopo:peerRegion": prod.peer_region,
        "drtopo:peerStack": "dr",
        "drtopo:kafka": {"bootstrapServers": "k:9092", "peerBootstrapServers": "p:9092"},
        "drtopo:dns": {"zoneName": "z", "recordName": "r", "endpoint": "e"},
        "drtopo:kubernetes": {"context": "c"},
        "drtopo:drill": {"load": {"default": {"writeRate": 800, "kafkaRate": 3000, "seedRows": 2000000}}},
    }
    settings = settings_from_config("prod", config)
    assert settings.drill.load.default.write_rate == 800 and settings.drill.load.default.connections == 8
    config["drtopo:drill"] = {"load": {"default": {"writeRate": 0, "kafkaRate": 3000, "seedRows": 1}}}
    with pytest.raises(SettingsError, match=r"drtopo:drill\.load\.default\.writeRate = 0"):
        settings_from_config("prod", config)


def test_region_failure_rto_a_user_sees_adds_the_modelled_phases_to_the_measured_ones() -> None:
    settings = load_settings("prod")
    measured = Measured(rto_seconds=2.0, action_seconds=1.5, action="scripts.promote", application_seconds=0.5)
    phases = rto_phases(REGION_PHASES, settings, measured)
    by = {p["phase"]: p for p in phases}
    assert [p["phase"] for p in phases] == ["detection", "decision", "action", "application", "dns", "reconnect"]
    assert by["detection"]["seconds"] == settings.dns.failure_threshold * settings.dns.request_interval_seconds
    assert by["decision"]["seconds"] == settings.drill.decision_seconds
    assert by["dns"]["seconds"] == settings.dns.ttl_seconds
    assert by["action"]["seconds"] == 1.0 and by["application"]["seconds"] == 0.5 and by["reconnect"]["seconds"] == 0.5
    assert all(by[n]["how"].startswith("modelled") for n in ("detection", "decision", "dns"))
    assert all(by[n]["how"].startswith("measured") for n in ("action", "application", "reconnect"))


def test_a_pod_restart_has_nothing_modelled_and_sums_to_the_lab_rto() -> None:
    phases = rto_phases(BY_NAME["single-pod-failure"].rto_phases, load_settings("prod"), Measured(rto_seconds=0.8))
    assert sum(p["seconds"] for p in phases) == pytest.approx(0.8)
    assert not any(p["how"].startswith("modelled") for p in phases)
    assert rto_phases(REGION_PHASES, load_settings("prod"), Measured(rto_seconds=None)) == []


def test_the_objective_is_judged_on_the_rto_a_user_sees() -> None:
    r = ScenarioResult("region-failure", objective_rto_seconds=10, objective_rpo_seconds=1)
    r.measured = Measured(rto_seconds=2.0, rpo_seconds=0.0, rows_lost=0)
    assert r.ok
    r.measured.client_rto_seconds = 62.0
    assert not r.ok and r.client_rto == 62.0


def acks(*times: float) -> list[Ack]:
    return [Ack(f"k{t}", t, "x") for t in times]


def test_stats_look_up_by_time() -> None:
    stats = LoadStats(acks=acks(1.0, 2.0, 2.0, 3.0, 5.0))
    assert stats.first_ack_after(2.0).at == 3.0
    assert stats.first_ack_after(0.0).at == 1.0
    assert stats.first_ack_after(5.0) is None
    assert [a.at for a in stats.acks_between(2.0, 3.0)] == [2.0, 2.0, 3.0]
    assert stats.rate() == pytest.approx(5 / 4)


def test_a_response_in_flight_at_the_failure_is_not_the_recovery() -> None:
    # The primary region dies at 2.0: its last response (sent at 1.98) arrives at 2.02 from prod; the standby
    # answers a request sent at 4.0 at 4.05. The recovery is the standby's, whatever arrived first.
    stats = LoadStats(
        acks=[Ack("a", 1.9, "prod", 1.88), Ack("b", 2.02, "prod", 1.98), Ack("c", 4.05, "dr", 4.0)],
    )
    assert stats.first_ack_after(2.0).target == "prod"
    assert stats.first_ack_sent_after(2.0).target == "dr"
    assert stats.first_ack_sent_after(4.05) is None
    # Without send times (older records) every ack after the moment counts, as before.
    assert LoadStats(acks=acks(1.0, 3.0)).first_ack_sent_after(2.0).at == 3.0


def test_the_outage_is_the_longest_silence_around_the_failure_not_the_first_ack_after_it() -> None:
    # Acks every 0.1 s; the process dies at 2.0, one response already on the wire arrives at 2.01, then 1.5 s of
    # silence until the restarted container answers at 3.51.
    times = [round(0.1 * i, 2) for i in range(21)] + [2.01, 3.51, 3.6, 3.7]
    stats = LoadStats(acks=acks(*times))
    assert stats.first_ack_after(2.0).at == 2.01  # what the old measure called a 0.01 s RTO
    assert stats.longest_gap(2.0, 3.5) == pytest.approx(1.5)
    # An outage already under way at `start` counts whole; none after `end` yet: not recovered.
    assert stats.longest_gap(2.5, 3.5) == pytest.approx(1.5)
    assert stats.longest_gap(2.0, 3.7) is None
    assert LoadStats(acks=acks(1.0)).longest_gap(0.0, 0.5) == 0.0


def test_per_second_counts_include_the_silent_seconds() -> None:
    assert per_second(acks(10.1, 10.5, 12.2), origin=10.0) == [(0.0, 2), (1.0, 0), (2.0, 1)]
    assert per_second([], origin=0.0) == []


def test_the_achieved_rate_runs_from_the_start_of_the_load_to_the_failure() -> None:
    stream = acks(*[100.5 + i / 100 for i in range(300)])  # started at 100, first ack half a second later
    assert achieved_rate(stream, 100.0, 102.5) == pytest.approx(80, abs=1)
    assert achieved_rate(stream, None, 102.0) is None
    assert achieved_rate(stream, 102.0, 102.1) is None


class _KeepAlive(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    ports: set[int] = set()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _KeepAlive.ports.add(self.client_address[1])
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keep_alive() -> Iterator[str]:
    _KeepAlive.ports = set()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_writer_shares_its_rate_over_kept_alive_connections(keep_alive: str) -> None:
    writer = RowWriter(lambda: keep_alive, rate=300, prefix="lanes", connections=3)
    writer.start()
    deadline = time.monotonic() + 10
    while len(writer.stats.acks) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stop_all() == 1  # one writer, however many connections
    stats = writer.stats
    assert len(stats.acks) >= 60 and stats.errors == 0
    assert len(_KeepAlive.ports) == 3, "each connection is kept alive: three client ports, whatever the count"
    assert [a.at for a in stats.acks] == sorted(a.at for a in stats.acks)
    assert len({a.key for a in stats.acks}) == len(stats.acks)
    assert stats.started_at is not None and stats.started_at <= stats.acks[0].at


def test_a_writer_refuses_no_connections() -> None:
    with pytest.raises(ValueError, match="connections 0"):
        RowWriter(lambda: "http://127.0.0.1:1", connections=0)


def loaded_result() -> ScenarioResult:
    r = ScenarioResult("region-failure", 14400, 900)
    r.measured = Measured(
        load="default",
        rto_seconds=2.0,
        rpo_seconds=0.0,
        rows_lost=0,
        failure_at_seconds=3.0,
        first_ack_after_failure_seconds=1.9,
        action_seconds=1.5,
        application_seconds=0.4,
        application="pilot light, 0 -> 1 replicas",
        write_rate_achieved=498.7,
        rows_acknowledged=2400,
        kafka_rate_achieved=1999.0,
    )
    long_step = "wait for the first write acknowledged by the standby region after the failover record flipped"
    r.steps = [
        {"step": "steady load through the failover record", "start_seconds": 0.0, "seconds": 3.0, "ok": True},
        {"step": long_step, "start_seconds": 3.0, "seconds": 2.0, "ok": True},
    ]
    r.phases = rto_phases(REGION_PHASES, load_settings("prod"), r.measured)
    r.measured.client_rto_seconds = sum(p["seconds"] for p in r.phases)
    r.series = {"writes": [(0.0, 480), (1.0, 500), (2.0, 500), (3.0, 0), (4.0, 490)], "kafka": [(0.0, 2000)]}
    return r


def test_the_table_shows_the_load_and_each_phase_marked_modelled(capsys: pytest.CaptureFixture[str]) -> None:
    print_table([loaded_result()])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("region-failure"))
    assert "default" in row and "499" in row and "2400" in row and "PASS" in row
    assert "user RTO = detection 30* + decision 120* + action 1.1 + application 0.4 + dns 30* + reconnect 0.5 s" in out
    assert "modelled from the stack's settings" in out
    assert "DNS via" not in out  # a scenario that measured neither says nothing of them


def test_the_table_says_the_dns_path_and_the_split_brain_writes_when_measured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from scripts.drill.scenarios.region_failure import RegionFigures

    partitioned, killed = loaded_result(), loaded_result()
    partitioned.measured.details = RegionFigures(rows_lost_before_failure=0, dns_path="data plane")
    partitioned.measured.details.split_brain_writes = 12
    killed.measured.details = RegionFigures(rows_lost_before_failure=0, dns_path="fallback")
    print_table([partitioned, killed])
    lines = capsys.readouterr().out.splitlines()
    assert [line.strip() for line in lines if "DNS via" in line] == [
        "DNS via data plane; split-brain writes 12",
        "DNS via fallback; split-brain writes not measured",
    ]


def test_the_picture_keeps_every_step_name_whole_and_draws_the_load() -> None:
    fig = timeline_figure([loaded_result()])
    steps_ax = fig.axes[0]
    labels = [t.get_text().replace("\n", " ") for t in steps_ax.get_yticklabels()]
    assert labels[1] == loaded_result().steps[1]["step"]
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    marks = {"failure", "first acknowledged write", "recovered (lab RTO)", "action (lab)", "reconnect (lab)"}
    assert marks | {"acknowledged writes/s"} <= set(legend)
    assert any(text.startswith("dns 30 s (modelled)") for text in legend)
