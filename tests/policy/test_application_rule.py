"""pilot-light-within-rto beyond the failing cases: warm standby is the way out of a short RTO, and the budget is the
readiness estimate's modelled parts plus the application's start time from settings."""

from __future__ import annotations

from drtopo.readiness.estimate import modelled_rto_parts
from drtopo.settings import load_settings
from policies.rules.application import pilot_light_budget
from tests.policy.stacks import baseline
from tests.policy.test_rules import violations_of

SHORT_RTO = {"objectives": {"regionFailure": {"rtoMinutes": 5, "rpoMinutes": 0.1}}}


def test_warm_standby_passes_where_pilot_light_does_not() -> None:
    pilot = load_settings("dr", overrides=SHORT_RTO)
    warm = load_settings("dr", overrides={**SHORT_RTO, "application": {"standbyReplicas": 1}})
    assert violations_of("pilot-light-within-rto", baseline(pilot), pilot)
    assert violations_of("pilot-light-within-rto", baseline(warm), warm) == []


def test_the_budget_is_the_modelled_failover_plus_the_start_time() -> None:
    settings = load_settings("prod", overrides={"application": {"startSeconds": 45}})
    total, parts = pilot_light_budget(settings)
    assert total == sum(p.seconds or 0 for p in modelled_rto_parts(settings)) + 45
    assert parts.endswith("application start (drtopo:application.startSeconds) 45 s")
