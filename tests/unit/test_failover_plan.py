"""The failover and failback plans: the order that makes them safe."""

from __future__ import annotations

from drtopo.failover.plan import MUTATING, REQUIRES, AppMove, Step, failback_plan, promote_plan, render


def names(plan: list) -> list[str]:
    return [s.name for s in plan]


def test_planned_failover_fences_and_drains_before_promoting() -> None:
    steps = names(promote_plan("dr", "prod", peer_reachable=True))
    assert steps == [
        "preflight",
        "guard",
        "fence",
        "drain",
        "promote",
        "consumer-group",
        "application",
        "dns",
        "application-down",
        "roles",
        "protect",
    ]


def test_unplanned_failover_has_no_drain() -> None:
    steps = names(promote_plan("dr", "prod", peer_reachable=False))
    assert "drain" not in steps
    assert steps.index("guard") < steps.index("promote") < steps.index("dns") < steps.index("roles")


def test_failback_rebuilds_then_switches_over_then_protects_again() -> None:
    steps = names(failback_plan("prod", "dr"))
    assert steps[:3] == ["preflight", "rebuild", "catch-up"]
    assert steps.index("fence") < steps.index("drain") < steps.index("promote") < steps.index("dns")
    assert steps[-1] == "rebuild-peer"


def test_read_only_steps_are_not_mutating() -> None:
    assert {"preflight", "guard", "catch-up"}.isdisjoint(MUTATING)
    assert set(names(failback_plan("prod", "dr"))) - {"preflight", "guard", "catch-up"} <= MUTATING


def test_render_numbers_every_step() -> None:
    text = render(promote_plan("dr", "prod", peer_reachable=True))
    assert text.splitlines()[0].startswith(" 1. preflight")
    assert "dr's takeover signal on in its region, prod's off" in text


def test_with_the_lease_the_guards_follow_the_promotion_at_once() -> None:
    for plan in (promote_plan("dr", "prod", True, lease=True), promote_plan("dr", "prod", False, lease=True)):
        steps = names(plan)
        assert steps[steps.index("promote") + 1] == "lease-guards"
        assert steps.index("lease-guards") < steps.index("consumer-group") < steps.index("application"), steps
    steps = names(failback_plan("prod", "dr", lease=True))
    assert steps[steps.index("promote") + 1] == "lease-guards" and steps[-1] == "rebuild-peer"
    assert "lease-guards" in MUTATING
    assert "lease-guards" not in names(promote_plan("dr", "prod", True)) + names(failback_plan("prod", "dr"))


def test_the_application_comes_up_after_promotion_and_its_group_before_dns_in_both_directions() -> None:
    """The application starts once its database is writable and its consumer group sits at the translated
    offsets (so it resumes from them), and DNS moves only after it: in every plan."""
    for plan in (
        promote_plan("dr", "prod", peer_reachable=True),
        promote_plan("dr", "prod", peer_reachable=False),
        failback_plan("prod", "dr"),
    ):
        steps = names(plan)
        assert steps.index("promote") < steps.index("consumer-group") < steps.index("application"), steps
        assert steps.index("application") + 1 == steps.index("dns") == steps.index("application-down") - 1, steps
    assert {"application", "application-down"} <= MUTATING
    # The old region's application goes down only once DNS has left it.
    assert REQUIRES[Step.APPLICATION_DOWN] is Step.DNS


def test_the_dry_run_plan_shows_the_replica_changes_of_both_regions() -> None:
    move = AppMove("collector", target_replicas=3, peer_replicas=0, target_now=0, peer_now=3)
    plan = {s.name: s.action for s in promote_plan("dr", "prod", True, move)}
    assert "scale dr's collector 0 -> 3 replicas through dr's own Kubernetes API" in plan["application"]
    assert "scale prod's collector 3 -> 0 replicas through prod's own API when it answers" in plan["application-down"]
    unread = AppMove("collector", target_replicas=3, peer_replicas=1)
    plan = {s.name: s.action for s in failback_plan("prod", "dr", unread)}
    assert (
        "prod's collector ? -> 3 replicas" in plan["application"]
        and "dr's collector ? -> 1" in plan["application-down"]
    )


def test_the_new_primary_is_protected_after_the_roles_switch_and_before_a_failback_rebuilds_its_peer() -> None:
    promote = names(promote_plan("dr", "prod", peer_reachable=False))
    assert promote[-2:] == ["roles", "protect"]
    failback = names(failback_plan("prod", "dr"))
    assert failback[-3:] == ["roles", "protect", "rebuild-peer"]
    assert "protect" in MUTATING
