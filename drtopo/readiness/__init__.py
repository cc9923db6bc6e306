"""Are we ready right now? The readiness view of a stack pair: each item measured against a limit the objectives
or settings give (`rules`, pure), gathered from the live pair (`gather`), the RTO and RPO if the primary region
failed now (`estimate`, pure), the drills' reports kept in the configuration bucket (`drills`) and the static page
(`page`, pure)."""
