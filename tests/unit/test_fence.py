"""The RDS fence's parameter group, as a pure function: what the instance's group enforces stays, writes stop."""

from __future__ import annotations

from drtopo.database.rds import READ_ONLY, fence_parameters


def test_the_fence_keeps_tls_and_archiving_and_adds_read_only() -> None:
    current = [
        {"ParameterName": "rds.force_ssl", "ParameterValue": "1", "ApplyType": "dynamic"},
        {"ParameterName": "archive_timeout", "ParameterValue": "60", "ApplyType": "dynamic"},
        {"ParameterName": "shared_preload_libraries", "ParameterValue": "pg_stat_statements", "ApplyType": "static"},
        {"ParameterName": "default_transaction_read_only", "ParameterValue": "0", "ApplyType": "dynamic"},
        {"ParameterName": "work_mem", "ApplyType": "dynamic"},  # no value: engine default, nothing to copy
    ]
    fenced = {p["ParameterName"]: (p["ParameterValue"], p["ApplyMethod"]) for p in fence_parameters(current)}
    assert fenced == {
        "rds.force_ssl": ("1", "immediate"),
        "archive_timeout": ("60", "immediate"),
        "shared_preload_libraries": ("pg_stat_statements", "pending-reboot"),
        "default_transaction_read_only": ("1", "immediate"),
    }
    assert fence_parameters([]) == [READ_ONLY]
