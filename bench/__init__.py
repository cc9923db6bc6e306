"""Benchmarks that print figures (never timed test assertions): `python -m bench` for the headline figures."""
