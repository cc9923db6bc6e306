"""The RTO a client sees, phase by phase: detection, decision, action, DNS, client reconnect.

The lab measures the action and the reconnect (from the failure until the first acknowledged write, the drill
acting at once). What a lab cannot show is modelled from the stack's settings and labelled so: Route53 declares
a region unhealthy after `failureThreshold` checks failing `requestIntervalSeconds` apart, an operator takes
`drtopo:drill.decisionSeconds` to start the runbook, and resolvers keep the old answer for the record's TTL.
A scenario that splits its lab time sets `action_seconds` (what its recovery command took); the rest of the
lab's RTO is the client's reconnect. Each scenario lists its phases, in order, from the ones here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from drtopo.settings import Settings
from scripts.drill.measured import Measured

MEASURED = "measured on the lab"

# One phase of a scenario's client-visible RTO: (name, seconds, how it was measured or modelled).
Phase = Callable[[Settings, Measured], tuple[str, float, str]]


def instant(name: str, how: str) -> Phase:
    """A phase that takes no time of its own (`how` says why)."""
    return lambda settings, measured: (name, 0.0, how)


def health_checks(how: Callable[[str], str] = lambda text: text) -> Phase:
    """Detection by health checks: `failureThreshold` checks failing `requestIntervalSeconds` apart (modelled);
    `how` words the explanation for what is checked."""

    def phase(settings: Settings, measured: Measured) -> tuple[str, float, str]:
        dns = settings.dns
        text = (
            f"modelled: {dns.failure_threshold} health checks failing {dns.request_interval_seconds} s apart "
            "(drtopo:dns.failureThreshold x requestIntervalSeconds)"
        )
        return "detection", float(dns.failure_threshold * dns.request_interval_seconds), how(text)

    return phase


def decision(settings: Settings, measured: Measured) -> tuple[str, float, str]:
    """An operator starts the runbook's command (modelled: `drtopo:drill.decisionSeconds`)."""
    return (
        "decision",
        float(settings.drill.decision_seconds),
        "modelled: drtopo:drill.decisionSeconds (an operator starts the runbook)",
    )


def _action_and_reconnect(measured: Measured) -> tuple[float, float, str]:
    lab_rto = measured.rto_seconds or 0.0
    action = measured.action_seconds
    if action is None or action > lab_rto:
        return float(lab_rto), 0.0, f"{MEASURED}: from the failure to the first acknowledged write (reconnect included)"
    return action, lab_rto - action, f"{MEASURED}: {measured.action or 'the recovery command'}"


def _application_part(measured: Measured, action_seconds: float) -> float:
    """The application phase's share of the action (none when the scenario measured none)."""
    return min(measured.application_seconds or 0.0, action_seconds)


def action(settings: Settings, measured: Measured) -> tuple[str, float, str]:
    """The recovery (measured): what the recovery command took, else the lab's whole RTO; without the application
    phase when a scenario measured one (`application` reports it)."""
    seconds, _, how = _action_and_reconnect(measured)
    apart = _application_part(measured, seconds)
    return "action", seconds - apart, how + (" (the application phase apart)" if apart else "")


def application(settings: Settings, measured: Measured) -> tuple[str, float, str]:
    """The application brought up in the target region (measured): scale-up, rollout, its own health endpoint; as
    promote's application step measured it, inside the action."""
    seconds, _, _ = _action_and_reconnect(measured)
    apart = _application_part(measured, seconds)
    mode = measured.application or "application step"
    return "application", apart, f"{MEASURED}: {mode} (scale-up, rollout, health), promote's application step"


def _lease_wait(measured: Measured) -> float:
    return float(getattr(measured.details, "lease_wait_seconds", None) or 0.0)


def lease_expiry(settings: Settings, measured: Measured) -> tuple[str, float, str]:
    """With the primary lease: promote waits until the old primary's lease has run out and its guard fenced it
    (measured by promote: `lease_wait_seconds`, leaseSeconds + renewSeconds from the end of its take)."""
    how = f"{MEASURED}: promote waited for the old primary's lease (leaseSeconds + renewSeconds after its take)"
    return "lease-expiry", _lease_wait(measured), how


def action_after_lease(settings: Settings, measured: Measured) -> tuple[str, float, str]:
    """The recovery (measured) without the lease's wait, which `lease_expiry` shows as its own phase, nor the
    application phase when a scenario measured one (`application` reports it)."""
    seconds, _, how = _action_and_reconnect(measured)
    apart = _application_part(measured, seconds)
    less = "the lease's expiry" + (" and the application phase" if apart else "")
    return "action", max(0.0, seconds - _lease_wait(measured) - apart), f"{how}, less {less}"


def dns_ttl(settings: Settings, measured: Measured) -> tuple[str, float, str]:
    """Resolvers keep the old answer for the record's TTL (modelled)."""
    return "dns", float(settings.dns.ttl_seconds), "modelled: resolvers keep the old answer for drtopo:dns.ttlSeconds"


def reconnect(settings: Settings, measured: Measured) -> tuple[str, float, str]:
    """The client's reconnect (measured): the lab's RTO after the action."""
    _, seconds, _ = _action_and_reconnect(measured)
    return "reconnect", seconds, f"{MEASURED}: from the end of the action to the client's first acknowledged write"


def rto_phases(phases: Sequence[Phase], settings: Settings, measured: Measured) -> list[dict[str, Any]]:
    """A scenario's client-visible RTO as the report shows it; none before the lab measured an RTO."""
    if measured.rto_seconds is None:
        return []
    return [
        {"phase": name, "seconds": round(seconds, 3), "how": how}
        for name, seconds, how in (phase(settings, measured) for phase in phases)
    ]
