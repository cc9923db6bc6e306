"""Whether a MirrorMaker 2 flow runs: its connectors' and tasks' states, as its Connect status topic says.

Dedicated MirrorMaker 2 keeps the Connect status of flow `source->target` in `mm2-status.<source>.internal` on the
target cluster: records keyed `status-connector-<Connector>` and `status-task-<Connector>-<n>`, each value a JSON
object with a `state` (RUNNING, PAUSED, FAILED, UNASSIGNED...). The newest record per key is the state; a worker
that stops writes UNASSIGNED for its tasks as it goes. A worker killed outright writes nothing, so its last RUNNING
stays until another worker takes over: the lag it leaves behind still shows in the mirror lag checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from drtopo.kafka.offsets import Record, read_topic

SOURCE_CONNECTOR = "MirrorSourceConnector"


def status_topic(source_alias: str) -> str:
    """The flow's Connect status topic on its target cluster."""
    return f"mm2-status.{source_alias}.internal"


def latest_states(records: Iterable[Record]) -> dict[str, str]:
    """The newest state per connector and task (`connector-<C>`, `task-<C>-<n>`); a tombstone removes one (pure)."""
    states: dict[str, str] = {}
    for record in records:
        key = (record.key or b"").decode(errors="replace")
        if not key.startswith(("status-connector-", "status-task-")):
            continue
        name = key.removeprefix("status-")
        if record.value is None:
            states.pop(name, None)
            continue
        try:
            states[name] = str(json.loads(record.value).get("state", ""))
        except (ValueError, AttributeError):
            states[name] = "UNREADABLE"
    return dict(sorted(states.items()))


@dataclass(frozen=True)
class FlowState:
    flow: str
    states: dict[str, str]

    @property
    def tasks(self) -> dict[str, str]:
        return {k: v for k, v in self.states.items() if k.startswith(f"task-{SOURCE_CONNECTOR}-")}

    @property
    def running(self) -> bool:
        """The source connector and at least one of its tasks run, and none of its tasks failed."""
        tasks = self.tasks
        return (
            self.states.get(f"connector-{SOURCE_CONNECTOR}") == "RUNNING"
            and "RUNNING" in tasks.values()
            and "FAILED" not in tasks.values()
        )

    def describe(self) -> str:
        connector = self.states.get(f"connector-{SOURCE_CONNECTOR}", "never started")
        tasks = self.tasks
        counts = ", ".join(f"{n} {s}" for s, n in sorted(_count(tasks.values()).items())) or "no tasks"
        return f"flow {self.flow}: {SOURCE_CONNECTOR} {connector}, tasks {counts}"


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def flow_state(target_bootstrap: str, source_alias: str, target_alias: str) -> FlowState:
    """The state of flow source->target from its status topic on the target (no topic: never started)."""
    flow = f"{source_alias}->{target_alias}"
    try:
        records = read_topic(target_bootstrap, status_topic(source_alias))
    except LookupError:
        return FlowState(flow, {})
    return FlowState(flow, latest_states(records))
