"""The lab's Kafka configuration, computed without servers: broker properties, MirrorMaker flows and readiness."""

from __future__ import annotations

from drtopo.settings import load_settings
from lab.kafka import broker_properties, enabled_flows, mirrormaker_properties, source_tasks_running


def parse(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_broker_listens_on_loopback_only_as_a_single_kraft_node() -> None:
    props = parse(broker_properties(9092, 9093, "/data"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == "/data"


def test_dr_stack_properties_mirror_prod_into_dr_with_lab_addresses() -> None:
    text = mirrormaker_properties(load_settings("dr"), "127.0.0.1:1111", "127.0.0.1:2222")
    assert enabled_flows(text) == [("us-east-1", "us-west-2", "127.0.0.1:2222")]
    assert "us-east-1.bootstrap.servers = 127.0.0.1:1111" in text.splitlines()


def test_primary_stack_properties_enable_no_flow() -> None:
    assert enabled_flows(mirrormaker_properties(load_settings("prod"), "127.0.0.1:1", "127.0.0.1:2")) == []


def test_ready_only_when_source_connector_and_a_task_run_without_failures() -> None:
    running = {"connector-MirrorSourceConnector": "RUNNING", "task-MirrorSourceConnector-0": "RUNNING"}
    assert source_tasks_running(running)
    assert not source_tasks_running({"connector-MirrorSourceConnector": "RUNNING"})
    assert not source_tasks_running({**running, "task-MirrorSourceConnector-1": "FAILED"})
    assert not source_tasks_running({**running, "connector-MirrorSourceConnector": "UNASSIGNED"})
