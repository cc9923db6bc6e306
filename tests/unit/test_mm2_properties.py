"""The MirrorMaker 2 properties: runbook topics, replication factor, checkpoints, heartbeats, offset sync, the
replication policy on every flow, the flow's direction per role, and the lab's bootstrap overrides."""

from __future__ import annotations

import re

import pytest

from drtopo.mm2_properties import cluster_alias, mirror_flow, render_mm2_properties
from drtopo.settings import RUNBOOK_TOPICS, Role, Settings, Topic, load_settings

INTERNAL_TOPIC_FACTORS = (
    "replication.factor",
    "checkpoints.topic.replication.factor",
    "heartbeats.topic.replication.factor",
    "offset-syncs.topic.replication.factor",
    "offset.storage.replication.factor",
    "config.storage.replication.factor",
    "status.storage.replication.factor",
)
FLOW_ENABLED = re.compile(r"^[^.]+->[^.]+\.enabled$")


def parse(text: str) -> dict[str, str]:
    """Java-properties `key = value` lines (comments and blanks skipped); a repeated key is an error."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"line {line!r} is not key = value"
        assert key.strip() not in props, f"key {key.strip()!r} is set twice"
        props[key.strip()] = value.strip()
    return props


def flows(props: dict[str, str]) -> dict[str, bool]:
    """Every declared flow `A->B` and whether it is enabled."""
    return {k.removesuffix(".enabled"): v == "true" for k, v in props.items() if FLOW_ENABLED.match(k)}


def with_role(stack: str, role: Role) -> Settings:
    return load_settings(stack, overrides={"role": role.value})


@pytest.fixture(params=["prod", "dr"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return load_settings(request.param)


def test_enabled_flow_mirrors_the_runbook_topics_and_group(settings: Settings) -> None:
    standby = with_role(settings.stack, Role.STANDBY)
    props = parse(render_mm2_properties(standby))
    source, target = mirror_flow(standby)
    assert (source, target) == (standby.peer_region, standby.region)
    assert props[f"{source}->{target}.topics"].split("|") == list(RUNBOOK_TOPICS)
    assert props[f"{source}->{target}.groups"] == "interface-exception-collector"


def test_unmirrored_topics_are_left_out(settings: Settings) -> None:
    topics = (*settings.kafka.topics, Topic(name="LocalOnly", mirrored=False))
    custom = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topics": topics})})
    source, target = mirror_flow(custom)
    assert "LocalOnly" not in parse(render_mm2_properties(custom))[f"{source}->{target}.topics"].split("|")


def test_replication_factor_three_for_mirrored_and_internal_topics(settings: Settings) -> None:
    props = parse(render_mm2_properties(settings))
    assert {key: props[key] for key in INTERNAL_TOPIC_FACTORS} == dict.fromkeys(INTERNAL_TOPIC_FACTORS, "3")


def test_checkpoints_heartbeats_and_group_offset_sync_follow_settings(settings: Settings) -> None:
    mirror = settings.kafka.mirror.model_copy(
        update={
            "emit_checkpoints_interval_seconds": 7,
            "emit_heartbeats_interval_seconds": 11,
            "sync_group_offsets_interval_seconds": 13,
        }
    )
    custom = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"mirror": mirror})})
    props = parse(render_mm2_properties(custom))
    flow = "{}->{}".format(*mirror_flow(custom))
    assert props[f"{flow}.emit.checkpoints.enabled"] == "true"
    assert props[f"{flow}.emit.checkpoints.interval.seconds"] == "7"
    assert props[f"{flow}.emit.heartbeats.enabled"] == "true"
    assert props[f"{flow}.emit.heartbeats.interval.seconds"] == "11"
    assert props[f"{flow}.sync.group.offsets.enabled"] == "true"
    assert props[f"{flow}.sync.group.offsets.interval.seconds"] == "13"


def test_replication_policy_is_stated_globally_and_on_every_flow(settings: Settings) -> None:
    props = parse(render_mm2_properties(settings))
    policy = settings.kafka.mirror.replication_policy
    declared = flows(props)
    assert len(declared) == 2
    assert props["replication.policy.class"] == policy
    for flow in declared:
        assert props[f"{flow}.replication.policy.class"] == policy


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_only_the_standby_mirrors_and_only_from_its_peer(stack: str) -> None:
    for role in Role:
        settings = with_role(stack, role)
        props = parse(render_mm2_properties(settings))
        into_here = f"{settings.peer_region}->{settings.region}"
        assert flows(props) == {into_here: role is Role.STANDBY, f"{settings.region}->{settings.peer_region}": False}
        assert set(props["clusters"].split(", ")) == {settings.region, settings.peer_region}


def test_the_two_stacks_standby_flows_are_opposite() -> None:
    prod, dr = with_role("prod", Role.STANDBY), with_role("dr", Role.STANDBY)
    assert mirror_flow(prod) == tuple(reversed(mirror_flow(dr)))


def test_bootstrap_servers_come_from_settings_or_overrides(settings: Settings) -> None:
    source, target = mirror_flow(settings)
    props = parse(render_mm2_properties(settings))
    assert props[f"{target}.bootstrap.servers"] == settings.kafka.bootstrap_servers
    assert props[f"{source}.bootstrap.servers"] == settings.kafka.peer_bootstrap_servers
    lab = parse(
        render_mm2_properties(settings, bootstrap_servers="127.0.0.1:19092", peer_bootstrap_servers="127.0.0.1:29092")
    )
    assert lab[f"{target}.bootstrap.servers"] == "127.0.0.1:19092"
    assert lab[f"{source}.bootstrap.servers"] == "127.0.0.1:29092"
    assert {k: v for k, v in lab.items() if "bootstrap" not in k} == {
        k: v for k, v in props.items() if "bootstrap" not in k
    }


# The dr stack's file as MirrorMaker 2 reads it (connect-mirror-maker.properties syntax, KIP-382 flow keys), written
# out line by line: a rendering change shows here as a diff to review.
DR_PROPERTIES = "\n".join(
    [
        "# MirrorMaker 2 for stack dr (standby) - rendered by drtopo, do not edit.",
        "# Flow us-east-1->us-west-2 is enabled.",
        "clusters = us-east-1, us-west-2",
        "us-east-1.bootstrap.servers = kafka.us-east-1.biopro.internal:9092",
        "us-west-2.bootstrap.servers = kafka.us-west-2.biopro.internal:9092",
        "replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
        "tasks.max = 4",
        "replication.factor = 3",
        "checkpoints.topic.replication.factor = 3",
        "heartbeats.topic.replication.factor = 3",
        "offset-syncs.topic.replication.factor = 3",
        "offset.storage.replication.factor = 3",
        "config.storage.replication.factor = 3",
        "status.storage.replication.factor = 3",
        "plugin.discovery = service_load",
        "us-east-1.plugin.discovery = service_load",
        "us-west-2.plugin.discovery = service_load",
        "",
        "us-east-1->us-west-2.enabled = true",
        "us-east-1->us-west-2.topics = OrderRejected|OrderCancelled|CollectionRejected|DistributionFailed"
        "|ValidationError|ExceptionCaptured|ExceptionResolved|CriticalExceptionAlert",
        "us-east-1->us-west-2.groups = interface-exception-collector",
        "us-east-1->us-west-2.replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
        "us-east-1->us-west-2.emit.checkpoints.enabled = true",
        "us-east-1->us-west-2.emit.checkpoints.interval.seconds = 10",
        "us-east-1->us-west-2.emit.heartbeats.enabled = true",
        "us-east-1->us-west-2.emit.heartbeats.interval.seconds = 10",
        "us-east-1->us-west-2.sync.group.offsets.enabled = true",
        "us-east-1->us-west-2.sync.group.offsets.interval.seconds = 10",
        "us-east-1->us-west-2.refresh.topics.interval.seconds = 30",
        "us-east-1->us-west-2.refresh.groups.interval.seconds = 30",
        "us-east-1->us-west-2.offset-syncs.topic.location = target",
        "us-east-1->us-west-2.offset.lag.max = 100",
        "us-east-1->us-west-2.sync.topic.configs.enabled = true",
        "us-east-1->us-west-2.sync.topic.acls.enabled = false",
        "",
        "us-west-2->us-east-1.enabled = false",
        "us-west-2->us-east-1.emit.heartbeats.enabled = false",
        "us-west-2->us-east-1.replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
    ]
)


def test_the_dr_stacks_properties_are_exactly_the_reviewed_text() -> None:
    assert render_mm2_properties(load_settings("dr")).splitlines() == DR_PROPERTIES.splitlines()


def test_aliases_are_the_region_names_without_a_dot() -> None:
    assert (cluster_alias("us-east-1"), cluster_alias("us-west-2")) == ("us-east-1", "us-west-2")


def test_the_disabled_reverse_flow_emits_no_heartbeats_into_the_peer() -> None:
    text = render_mm2_properties(load_settings("dr"))
    assert "us-west-2->us-east-1.enabled = false" in text
    assert "us-west-2->us-east-1.emit.heartbeats.enabled = false" in text
