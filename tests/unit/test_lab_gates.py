"""The regions' gates without a server: proxy names, the toxics of a partition and of the WAN, a gate's state, and
the broker listeners behind the gates (pure)."""

from __future__ import annotations

import pytest

from lab import gates
from lab.kafka import broker_properties


def test_a_partition_drops_every_byte_both_ways_and_holds_connections_open() -> None:
    toxics = gates.partition_toxics()
    assert {(t["type"], t["stream"], t["attributes"]["timeout"]) for t in toxics} == {
        ("timeout", "upstream", 0),
        ("timeout", "downstream", 0),
    }


def test_the_wans_round_trip_is_split_between_the_two_directions() -> None:
    toxics = gates.wan_toxics(30, 10)
    assert [(t["type"], t["stream"], t["attributes"]) for t in toxics] == [
        ("latency", "upstream", {"latency": 15, "jitter": 5}),
        ("latency", "downstream", {"latency": 15, "jitter": 5}),
    ]
    with pytest.raises(ValueError, match="0 or more; got -1 ms"):
        gates.wan_toxics(-1, 0)
    assert gates.wan_toxics(0, 0) == []  # no WAN: nothing on the gates


def test_the_wans_bandwidth_caps_each_connection_both_ways() -> None:
    toxics = gates.wan_toxics(0, 0, 256)
    assert [(t["name"], t["type"], t["stream"], t["attributes"]) for t in toxics] == [
        ("wan-bandwidth-upstream", "bandwidth", "upstream", {"rate": 256}),
        ("wan-bandwidth-downstream", "bandwidth", "downstream", {"rate": 256}),
    ]
    assert {t["type"] for t in gates.wan_toxics(30, 0, 256)} == {"latency", "bandwidth"}
    with pytest.raises(ValueError, match="-5 KB/s"):
        gates.wan_toxics(30, 0, -5)


def test_a_resetting_link_sends_a_reset_both_ways() -> None:
    assert [(t["type"], t["stream"], t["attributes"]) for t in gates.reset_toxics(0)] == [
        ("reset_peer", "upstream", {"timeout": 0}),
        ("reset_peer", "downstream", {"timeout": 0}),
    ]
    with pytest.raises(ValueError, match="got -1"):
        gates.reset_toxics(-1)


@pytest.mark.parametrize(
    ("toxics", "enabled", "state"),
    [
        ([], True, "open"),
        (gates.partition_toxics(), True, "partitioned"),
        (gates.wan_toxics(30, 4), True, "degraded (30 ms ± 4 ms)"),
        ([*gates.partition_toxics(), *gates.wan_toxics(30, 0)], True, "partitioned, degraded (30 ms ± 0 ms)"),
        (gates.wan_toxics(30, 0, 256), True, "degraded (30 ms ± 0 ms, 256 KB/s)"),
        (gates.wan_toxics(0, 0, 64), True, "degraded (64 KB/s)"),
        (gates.reset_toxics(500), True, "resetting (after 500 ms)"),
        ([], False, "disabled"),
    ],
)
def test_a_gates_state_reads_from_its_toxics(toxics: list[dict[str, object]], enabled: bool, state: str) -> None:
    assert gates.gate_state(toxics, enabled) == state


@pytest.mark.parametrize("kind", gates.KINDS)
def test_proxy_names_carry_the_stack_and_the_kind(kind: str) -> None:
    assert gates.split_name(gates.proxy_name("prod-eu", kind)) == ("prod-eu", kind)


def test_a_name_without_a_kind_is_not_a_gate() -> None:
    with pytest.raises(ValueError, match="not a gate proxy name"):
        gates.split_name("prod-redis")


def test_the_gates_listeners_are_advertised_as_the_gates_themselves() -> None:
    text = broker_properties(9092, 9093, "/d", 9094, "10.0.0.2", (9095, 19095, 9096, 19096))
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["listeners"].split(",")[-2:] == ["GATE://127.0.0.1:9095", "PODGATE://127.0.0.1:9096"]
    assert props["advertised.listeners"].split(",")[-2:] == ["GATE://127.0.0.1:19095", "PODGATE://10.0.0.2:19096"]
    assert "GATE:PLAINTEXT" in props["listener.security.protocol.map"].split(",")
    assert "GATE" not in broker_properties(9092, 9093, "/d", 9094, "10.0.0.2")


@pytest.mark.parametrize("to", ["dr", "prod", gates.WITNESS])
def test_a_regions_way_out_is_its_own_gate_named_for_where_it_goes(to: str) -> None:
    assert gates.split_name(gates.proxy_name("prod", gates.egress_kind(to))) == ("prod", f"egress-{to}")
    assert gates.split_name(gates.proxy_name(gates.WITNESS, "aws")) == (gates.WITNESS, "aws")
