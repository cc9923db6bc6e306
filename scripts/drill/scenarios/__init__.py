"""The drill's scenarios, one per row of the objectives table, in the table's order; each is one object (see
scenario.py) in its own file. A new scenario is a new file and one line here. A variant plays a row another way
(region-failure-kill: the region dies instead of being cut off; region-failure-lease: cut off with the primary
lease on; namespace-loss: the whole namespace is deleted instead of a few objects); it is run when named, not by
`--scenario all`."""

from __future__ import annotations

from typing import Any

from scripts.drill.scenarios.configuration_loss import ConfigurationLoss
from scripts.drill.scenarios.database_corruption import DatabaseCorruption
from scripts.drill.scenarios.kafka_cluster_failure import KafkaClusterFailure
from scripts.drill.scenarios.namespace_loss import NamespaceLoss
from scripts.drill.scenarios.region_failure import RegionFailure
from scripts.drill.scenarios.region_failure_kill import RegionFailureKill
from scripts.drill.scenarios.region_failure_lease import RegionFailureLease
from scripts.drill.scenarios.scenario import Scenario
from scripts.drill.scenarios.single_pod_failure import SinglePodFailure

SCENARIOS: tuple[Scenario[Any], ...] = (
    SinglePodFailure(),
    DatabaseCorruption(),
    RegionFailure(),
    KafkaClusterFailure(),
    ConfigurationLoss(),
)
VARIANTS: tuple[Scenario[Any], ...] = (RegionFailureKill(), RegionFailureLease(), NamespaceLoss())
NAMES = tuple(s.name for s in SCENARIOS)
BY_NAME: dict[str, Scenario[Any]] = {s.name: s for s in (*SCENARIOS, *VARIANTS)}
# What `--scenario` accepts by name: the table's rows and the variants.
CHOICES = tuple(BY_NAME)
# What `--scenario all` runs: least destructive first (region-failure leaves the most to rebuild).
ORDER = tuple(s.name for s in sorted(SCENARIOS, key=lambda s: s.order))
