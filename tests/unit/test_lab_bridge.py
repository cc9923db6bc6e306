"""The lab's bridge (lab/bridge.py) and the pure parts of the lab's workloads (lab/kube_workloads.py)."""

from __future__ import annotations

import pytest

from lab import bridge, kube_workloads


def test_ports_parse_or_name_the_bad_one() -> None:
    assert bridge.parse_ports("5432,80") == [5432, 80]
    for bad in ("", "0", "70000", "x", "1,,2"):
        with pytest.raises(ValueError, match="is not a TCP port"):
            bridge.parse_ports(bad)


def test_pods_read_the_database_and_kafka_at_the_node() -> None:
    outputs = {"dbAddress": "127.0.0.1", "dbPort": 5, "kafkaBootstrap": "127.0.0.1:1", "peerKafkaBootstrap": "x"}
    assert kube_workloads.pod_outputs(outputs, "10.231.0.2", {"own": "10.231.0.2:7", "peer": "10.231.0.2:8"}) == {
        "dbAddress": "10.231.0.2",
        "dbPort": 5,
        "kafkaBootstrap": "10.231.0.2:7",
        "peerKafkaBootstrap": "10.231.0.2:8",
    }


def test_the_lab_jobs_get_the_emulators_credentials_from_a_secret_never_a_literal() -> None:
    env = {e["name"]: e for e in kube_workloads.job_env("http://10.231.0.2:9")}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://10.231.0.2:9"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": kube_workloads.LAB_AWS_SECRET, "key": key}


def test_job_and_pod_states() -> None:
    assert kube_workloads.job_finished({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == (
        "Complete"
    )
    assert kube_workloads.job_finished({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}) is None
    ready = {
        "metadata": {"name": "p"},
        "status": {"phase": "Running", "containerStatuses": [{"ready": True}]},
    }
    assert kube_workloads.pod_ready(ready)
    assert not kube_workloads.pod_ready({**ready, "metadata": {"name": "p", "deletionTimestamp": "now"}})
    assert not kube_workloads.pod_ready({**ready, "status": {"phase": "Running", "containerStatuses": []}})


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    import socket

    from lab import process

    ports = [process.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(process.PORT_RANGE[0] <= p <= process.PORT_RANGE[1] < 30000 for p in ports)
    with socket.socket() as s:
        s.bind((process.LOOPBACK, ports[0]))  # free when handed out
