"""The drill: every scenario of the objectives table on the lab, measured against its RTO and RPO.

The one command that stands above `lab/`: `run.py` parses the flags and runs the scenarios (`scenarios/`), under the
load of `loadgen.py`, and `report.py` writes the table, the JSON and the timeline picture.
"""
