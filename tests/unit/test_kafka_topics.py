"""Which cluster is "source" and which is "backup" for `restore kafka-topics` / `consumer-offsets`, in both roles."""

from __future__ import annotations

from drtopo.kafka.topics import Cluster, clusters
from drtopo.outputs import StackOutputs
from drtopo.settings import load_settings


def _outputs(stack: str, own: str, peer: str) -> StackOutputs:
    return StackOutputs.model_construct(stack=stack, kafka_bootstrap=own, peer_kafka_bootstrap=peer)


def test_source_is_the_primary_region_and_backup_the_standby_from_either_stack() -> None:
    prod = load_settings("prod")  # primary in us-east-1
    dr = load_settings("dr")  # standby in us-west-2
    from_prod = clusters(prod, _outputs("prod", "east:9092", "west:9092"))
    from_dr = clusters(dr, _outputs("dr", "west:9092", "east:9092"))
    expected = {"source": Cluster(prod.region, "east:9092"), "backup": Cluster(dr.region, "west:9092")}
    assert from_prod == expected
    assert from_dr == expected


def test_roles_swap_after_failover() -> None:
    dr_primary = load_settings("dr", overrides={"role": "primary"})
    roles = clusters(dr_primary, _outputs("dr", "west:9092", "east:9092"))
    assert roles["source"].bootstrap == "west:9092" and roles["backup"].bootstrap == "east:9092"
