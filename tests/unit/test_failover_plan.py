"""The failover and failback plans: the order that makes them safe."""

from __future__ import annotations

from drtopo.failover.plan import MUTATING, failback_plan, promote_plan, render


def names(plan: list) -> list[str]:
    return [s.name for s in plan]


def test_planned_failover_fences_and_drains_before_promoting() -> None:
    steps = names(promote_plan("dr", "prod", peer_reachable=True))
    assert steps == ["preflight", "guard", "fence", "drain", "promote", "consumer-group", "dns", "roles"]


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
    steps = names(failback_plan("prod", "dr", lease=True))
    assert steps[steps.index("promote") + 1] == "lease-guards" and steps[-1] == "rebuild-peer"
    assert "lease-guards" in MUTATING
    assert "lease-guards" not in names(promote_plan("dr", "prod", True)) + names(failback_plan("prod", "dr"))
