"""Drill scenarios, one per row of the objectives table; each returns a ScenarioResult with measured RTO and RPO."""
