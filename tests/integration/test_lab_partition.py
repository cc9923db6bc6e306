"""The regions' gates: a partitioned prod keeps running inside its region while nothing outside reaches it, and a
heal gives everything back (replication streams again). Runs on the session's lab and heals it whatever happens."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError
from confluent_kafka.admin import AdminClient

from drtopo import aws as drtopo_aws
from drtopo import naming
from drtopo.failover import dns
from drtopo.outputs import load_outputs
from lab import aws, gates, kube_build, postgres
from lab.__main__ import main as lab_main
from lab.core import Lab
from lab.kube import Layout
from lab.resolver import NoRecordSeen, Resolver

pytestmark = pytest.mark.lab

PROBE = "lab_partition_probe"
# Short client timeouts: what a partition makes a client wait for is its own timeout, never a refusal.
CLIENT_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def baseline(lab: Lab) -> Lab:
    """Whatever the session's earlier tests left: prod the primary, dr its standby, every server up."""
    lab.reset_postgres()
    for region in (lab.prod, lab.dr):
        region.kafka.start()
        region.service.start()
    return lab


@pytest.fixture
def healed(baseline: Lab) -> Iterator[Lab]:
    lab = baseline
    lab.heal()
    lab.degrade(0)
    lab.stop_resets()
    try:
        yield lab
    finally:
        lab.heal()
        lab.degrade(0)
        lab.stop_resets()


def _probe(lab: Lab, stack: str) -> psycopg.Connection:
    """A client inside the region: the server's own port, no gate."""
    return psycopg.connect(lab.region(stack).postgres.conninfo(), password=lab.password, autocommit=True)


def write_row(lab: Lab) -> str:
    mark = uuid.uuid4().hex
    with _probe(lab, "prod") as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {PROBE} (mark text PRIMARY KEY)")
        conn.execute(f"INSERT INTO {PROBE} VALUES (%s)", (mark,))
    return mark


def on_dr(lab: Lab, mark: str) -> bool:
    with _probe(lab, "dr") as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (PROBE,)).fetchone()
        if not exists or not exists[0]:
            return False
        return conn.execute(f"SELECT count(*) FROM {PROBE} WHERE mark = %s", (mark,)).fetchone() == (1,)


def reaches_dr(lab: Lab, mark: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if on_dr(lab, mark):
            return True
        time.sleep(0.2)
    return on_dr(lab, mark)


def gated_db(lab: Lab, stack: str) -> None:
    region = lab.region(stack)
    conninfo = postgres.conninfo(region.gate_port("postgres"), region.settings.database.name)
    with psycopg.connect(conninfo, password=lab.password, connect_timeout=CLIENT_TIMEOUT_S) as conn:
        conn.execute("SELECT 1")


def gated_kafka(lab: Lab, stack: str) -> None:
    admin = AdminClient({"bootstrap.servers": lab.region(stack).kafka.gated_bootstrap, "log_level": 0})
    metadata = admin.list_topics(timeout=CLIENT_TIMEOUT_S)
    # Every broker the cluster advertises to a client that came through the gate is the gate itself.
    assert [f"{b.host}:{b.port}" for b in metadata.brokers.values()] == [lab.region(stack).kafka.gated_bootstrap]


def gated_service(lab: Lab, stack: str) -> None:
    region = lab.region(stack)
    with urllib.request.urlopen(region.service.gated_url + region.settings.service.health_path, timeout=3) as answer:
        assert answer.status == 200


def gated_aws(lab: Lab, stack: str) -> None:
    region = lab.region(stack)
    config = Config(connect_timeout=CLIENT_TIMEOUT_S, read_timeout=CLIENT_TIMEOUT_S, retries={"total_max_attempts": 1})
    s3 = boto3.client(
        "s3",
        region_name=region.settings.region,
        endpoint_url=region.aws_endpoint,
        config=config,
        aws_access_key_id=aws.DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws.DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    assert s3.list_buckets()["Buckets"]


def gated_kube(lab: Lab, stack: str) -> None:
    context = lab.region(stack).settings.kubernetes.context
    argv = [str(kube_build.binary("kubectl")), f"--kubeconfig={Layout(lab.root).kubeconfig}", f"--context={context}"]
    argv += [f"--request-timeout={CLIENT_TIMEOUT_S}s", "get", "namespace", lab.region(stack).namespace, "-o", "name"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


CROSSINGS: dict[str, Callable[[Lab, str], None]] = {
    "database": gated_db,
    "kafka": gated_kafka,
    "service": gated_service,
    "aws": gated_aws,
    "kubernetes": gated_kube,
}


def fails(check: Callable[[Lab, str], None], lab: Lab, stack: str) -> str | None:
    """The error of a crossing that fails (None when it works)."""
    try:
        check(lab, stack)
    except Exception as exc:  # each client fails its own way: a timeout is what the test looks at
        return f"{type(exc).__name__}: {exc}"
    return None


def region_kinds(stack: str) -> list[str]:
    """A region's gates: every kind, and its ways out to the other region's and the witness's AWS endpoints."""
    other = "dr" if stack == "prod" else "prod"
    return [*gates.KINDS, gates.egress_kind(other), gates.egress_kind(gates.WITNESS)]


def test_every_crossing_goes_through_a_gate_that_passes_traffic_at_baseline(healed: Lab) -> None:
    lab = healed
    states = lab.gates.status()
    assert {name: info["state"] for name, info in states.items()} == dict.fromkeys(
        [*(gates.proxy_name(s, kind) for s in ("prod", "dr") for kind in region_kinds(s)), "witness-aws"], "open"
    )
    assert {(s, name): fails(check, lab, s) for s in ("prod", "dr") for name, check in CROSSINGS.items()} == {
        (s, name): None for s in ("prod", "dr") for name in CROSSINGS
    }
    # The outputs point the scripts at the gates, the env each region's AWS endpoint at its gate.
    outputs = {s: lab.region(s).outputs_path.read_text() for s in ("prod", "dr")}
    assert f'"dbPort": {lab.prod.gate_port("postgres")}' in outputs["prod"]
    assert lab.dr.kafka.gated_bootstrap in outputs["prod"] and lab.prod.service.gated_url in outputs["prod"]
    endpoints = lab.env()["DRTOPO_AWS_ENDPOINTS"]
    witness = f"http://127.0.0.1:{lab.gates.proxies()['witness-aws']['listen'].rsplit(':', 1)[1]}"
    assert endpoints == f"us-east-1={lab.prod.aws_endpoint},us-west-2={lab.dr.aws_endpoint},eu-west-1={witness}"
    # dr streams from prod's gate, not from prod's own port.
    with _probe(lab, "dr") as conn:
        (conninfo,) = conn.execute("SELECT conninfo FROM pg_stat_wal_receiver").fetchone()
    assert f"port={lab.prod.gate_port('postgres')}" in conninfo


def test_a_partitioned_prod_runs_on_inside_while_nothing_crosses_and_heal_gives_it_back(
    healed: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = healed
    assert reaches_dr(lab, write_row(lab), 30), "baseline: a row on prod must reach dr"

    assert lab_main(["partition", "prod", "--root", str(lab.root)]) == 0
    assert "prod partitioned" in capsys.readouterr().out
    states = {name: info["state"] for name, info in lab.gates.status().items()}
    assert {n: s for n, s in states.items() if n.startswith("prod-")} == {
        gates.proxy_name("prod", k): "partitioned" for k in region_kinds("prod")
    }
    assert {n: s for n, s in states.items() if n.startswith("dr-")} == {
        gates.proxy_name("dr", k): "open" for k in region_kinds("dr")
    }

    # Inside the region prod still takes writes on its own port; nothing of them reaches dr.
    during = write_row(lab)
    assert not reaches_dr(lab, during, 5)
    # From outside, every crossing into prod hangs until the client's own timeout; dr's are untouched.
    failures = {name: fails(check, lab, "prod") for name, check in CROSSINGS.items()}
    assert all(failures.values()), failures
    assert "timeout expired" in str(failures["database"])  # libpq's connect_timeout, not a refusal
    assert "refused" not in " ".join(map(str, failures.values())).lower()
    assert {name: fails(check, lab, "dr") for name, check in CROSSINGS.items()} == dict.fromkeys(CROSSINGS)

    assert lab_main(["heal", "--root", str(lab.root)]) == 0
    assert {info["state"] for info in lab.gates.status().values()} == {"open"}
    # Replication streams again: what prod took during the partition and after it reaches dr.
    after = write_row(lab)
    assert reaches_dr(lab, during, 60) and reaches_dr(lab, after, 30)
    assert {name: fails(check, lab, "prod") for name, check in CROSSINGS.items()} == dict.fromkeys(CROSSINGS)


# `lab degrade` arguments and the state every gate then shows; the last row takes the WAN away.
DEGRADES: list[tuple[list[str], str]] = [
    (["--latency", "40", "--jitter", "10"], "degraded (40 ms ± 10 ms)"),
    (["--latency", "30", "--bandwidth", "256"], "degraded (30 ms ± 0 ms, 256 KB/s)"),
    (["--latency", "0"], "open"),
]


def test_degrade_gives_every_gate_the_wans_latency_and_bandwidth_and_zero_takes_it_away(healed: Lab) -> None:
    lab = healed
    for args, state in DEGRADES:
        assert lab_main(["degrade", *args, "--root", str(lab.root)]) == 0, args
        assert {info["state"] for info in lab.gates.status().values()} == {state}, args
        assert fails(gated_db, lab, "prod") is None  # slower, still through
    assert lab_main(["degrade", "--latency", "30", "--bandwidth", "-1", "--root", str(lab.root)]) == 2
    assert {info["state"] for info in lab.gates.status().values()} == {"open"}  # bad input: nothing changed


def test_the_lab_lists_its_gate_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lab", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert all(command in done.stdout for command in ("partition", "heal", "degrade", "--bandwidth")), done.stdout


def test_partition_names_a_region_or_a_stack_and_refuses_anything_else(healed: Lab) -> None:
    lab = healed
    dr_gates = sorted(gates.proxy_name("dr", k) for k in region_kinds("dr"))
    assert lab.partition("us-west-2") == dr_gates
    assert lab.heal("dr") == dr_gates
    assert lab.heal() == []  # nothing partitioned: nothing healed, no connection closed
    # The lease's witness region (lab/project.py WITNESS_REGION): one gate, its AWS endpoint.
    assert lab.partition("eu-west-1") == ["witness-aws"] and lab.heal("witness") == ["witness-aws"]
    with pytest.raises(ValueError, match="'ap-south-1' is neither a stack nor a region of the lab"):
        lab.partition("ap-south-1")
    # A link that resets (MirrorMaker's cross-region one): only the gate named, until the resets stop.
    assert lab.reset_links("prod", ["kafka-pods"], after_ms=500) == [gates.proxy_name("prod", "kafka-pods")]
    states = {name: info["state"] for name, info in lab.gates.status().items()}
    assert {n for n, state in states.items() if state != "open"} == {gates.proxy_name("prod", "kafka-pods")}
    assert states[gates.proxy_name("prod", "kafka-pods")] == "resetting (after 500 ms)"
    assert lab.stop_resets() == [gates.proxy_name("prod", "kafka-pods")]
    assert {info["state"] for info in lab.gates.status().values()} == {"open"}


def set_takeover(lab: Lab, stack: str, state: str) -> None:
    """The stack's takeover alarm, written in its own region through its own gate (as promote's signal is)."""
    region = lab.region(stack)
    watch = aws.client("cloudwatch", region.settings.region, region.aws_endpoint)
    name = naming.takeover_alarm_name(region.settings.region)
    watch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="lab partition test")


def test_the_data_plane_answers_from_the_last_record_set_while_us_east_1_is_cut_off(healed: Lab) -> None:
    lab = healed
    prod, dr = (load_outputs(lab.region(s).outputs_path, s) for s in ("prod", "dr"))
    resolver = Resolver(prod, lab.aws_endpoints())
    assert (resolver.serving(), resolver.source) == (prod.set_identifier, "control plane")
    lab.partition("prod")
    try:
        # Route53's API (us-east-1) is gone: the data plane keeps answering from what it last saw...
        assert (resolver.serving(), resolver.source) == (prod.set_identifier, "last seen")
        # ... and follows dr's takeover signal, read in dr's own region.
        set_takeover(lab, "dr", "ALARM")
        assert (resolver.serving(), resolver.source) == (dr.set_identifier, "last seen")
        # A resolver that never saw the record set has nothing to answer from.
        with pytest.raises(NoRecordSeen, match="has not answered yet"):
            Resolver(prod, lab.aws_endpoints()).answer()
    finally:
        lab.heal()
        set_takeover(lab, "dr", "OK")
    assert (resolver.serving(), resolver.source) == (prod.set_identifier, "control plane")


# What the scripts call in a cut-off us-east-1 (through drtopo.aws's one client factory, each region at its gate):
# (service, the client's region, the call). Route53 is asked from us-west-2 and still goes to us-east-1's endpoint.
CUT_OFF_CALLS: list[tuple[str, str, Callable[[object], object]]] = [
    ("s3", "us-east-1", lambda c: c.list_buckets()),
    ("ssm", "us-east-1", lambda c: c.describe_parameters()),
    ("route53", "us-west-2", lambda c: c.list_hosted_zones()),
]


def test_calls_to_a_partitioned_regions_endpoints_end_within_the_factorys_bound_naming_it(healed: Lab) -> None:
    """Every call of CUT_OFF_CALLS at once, in one partition: each waits out the bound on its own."""
    lab = healed
    endpoints = lab.aws_endpoints()
    previous = drtopo_aws.use_endpoints(endpoints)
    credentials = {k.lower(): v for k, v in aws.DUMMY_CREDENTIALS.items()}

    def cut_off(case: tuple[str, str, Callable[[object], object]]) -> tuple[BaseException | None, float]:
        service, region, call = case
        started = time.monotonic()
        try:
            call(made[service, region])
        except ReadTimeoutError as exc:  # the gate accepts and never answers: not a refusal
            return exc, time.monotonic() - started
        return None, time.monotonic() - started

    try:
        made = {(s, r): drtopo_aws.client(s, r, **credentials) for s, r, _ in CUT_OFF_CALLS}
        for service, region, call in CUT_OFF_CALLS:
            call(made[service, region])  # open: answered
        lab.partition("prod")
        with ThreadPoolExecutor(len(CUT_OFF_CALLS)) as pool:
            ended = list(pool.map(cut_off, CUT_OFF_CALLS))
    finally:
        lab.heal()
        drtopo_aws.use_endpoints(previous)
    for (service, region, _), (raised, waited) in zip(CUT_OFF_CALLS, ended, strict=True):
        assert isinstance(raised, ReadTimeoutError), (service, region, raised)
        # A bound, not a speed: the call must end (boto3's defaults made it about 92 s), and say where it went.
        assert waited <= drtopo_aws.call_bound_seconds(), (service, region, waited)
        line = str(raised)
        assert "\n" not in line and endpoints["us-east-1"] in line and f" in {region}," in line, line


def test_dns_moves_through_the_data_plane_with_us_east_1_cut_off_and_the_record_upsert_unused(
    healed: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = healed
    for key, value in aws.DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    prod, dr = (load_outputs(lab.region(s).outputs_path, s) for s in ("prod", "dr"))
    resolver = Resolver(prod, lab.aws_endpoints())
    assert resolver.serving() == prod.set_identifier  # it has seen the record set
    previous = drtopo_aws.use_endpoints(lab.aws_endpoints())
    try:
        lab.partition("prod")
        try:
            result = dns.fail_over(dr, prod)
            served, source = resolver.serving(), resolver.source
        finally:
            lab.heal()
        records = dns.record_state(prod)  # Route53's API, through us-east-1's healed gate
    finally:
        drtopo_aws.use_endpoints(previous)
    try:
        assert (result["dns_path"], result["mode"]) == (dns.DATA_PLANE, "signal")
        assert "records" not in result and "fallback_reason" not in result
        # prod's signal could not be cleared (no answer from us-east-1), which the data plane counts as no veto.
        assert result["signal"]["peer"] == dns.PEER_UNREACHABLE
        assert "us-east-1" in result["signal"]["peer_error"] and lab.prod.aws_endpoint in result["signal"]["peer_error"]
        assert result["after"] == {dr.set_identifier: "PRIMARY", prod.set_identifier: "SECONDARY"}
        # The lab's data plane, from the record set it saw before the cut, answers dr.
        assert (served, source) == (dr.set_identifier, "last seen")
        # The records were not touched: after the heal Route53's API still holds them as declared.
        assert records == {prod.set_identifier: "PRIMARY", dr.set_identifier: "SECONDARY"}
    finally:
        set_takeover(lab, "dr", "OK")
