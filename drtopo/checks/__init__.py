"""The runbook's post-recovery checks: service, database, Kafka, and the validation run that puts them together."""
