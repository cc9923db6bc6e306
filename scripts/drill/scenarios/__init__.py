"""Drill scenarios, one per row of the objectives table; each returns a ScenarioResult with measured RTO and RPO."""

from __future__ import annotations

from types import ModuleType

from scripts.drill.scenarios import (
    configuration_loss,
    database_corruption,
    kafka_cluster_failure,
    region_failure,
    single_pod_failure,
)

# Scenario name -> its module (`run(ctx, result)` and a docstring whose first line says what it does).
SCENARIO_MODULES: dict[str, ModuleType] = {
    "single-pod-failure": single_pod_failure,
    "configuration-loss": configuration_loss,
    "database-corruption": database_corruption,
    "kafka-cluster-failure": kafka_cluster_failure,
    "region-failure": region_failure,
}
