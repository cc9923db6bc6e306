"""Settings: the stacks load with the runbook's values, and each bad configuration fails with one line naming the
key, the bad value and what is allowed."""

from __future__ import annotations

import pytest

from drtopo.settings import RUNBOOK_TOPICS, Role, SettingsError, load_settings


def test_stacks_load_with_their_roles_and_regions() -> None:
    prod, dr = load_settings("prod"), load_settings("dr")
    assert (prod.role, prod.region, prod.peer_region, prod.peer_stack) == (Role.PRIMARY, "us-east-1", "us-west-2", "dr")
    assert (dr.role, dr.region, dr.peer_region, dr.peer_stack) == (Role.STANDBY, "us-west-2", "us-east-1", "prod")
    assert dr.primary_stack_reference == "biopro/drtopo/prod"
    assert Role.PRIMARY.failover == "PRIMARY" and Role.STANDBY.failover == "SECONDARY"


def test_defaults_carry_the_runbook() -> None:
    settings = load_settings("prod")
    objectives = settings.objectives
    table = {
        "single-pod-failure": (2, 0),
        "database-corruption": (120, 15),
        "region-failure": (240, 15),
        "kafka-cluster-failure": (60, 5),
        "configuration-loss": (30, 0),
    }
    for scenario, (rto, rpo) in table.items():
        objective = objectives.for_scenario(scenario)
        assert (objective.rto_minutes, objective.rpo_minutes) == (rto, rpo), scenario
    tiers = settings.retention.tiers()
    assert [tiers[t].days for t in ("daily", "weekly", "monthly", "yearly")] == [30, 84, 365, 2555]
    assert settings.retention.audit_years == 7 and settings.retention.operational_days == 90
    assert [t.name for t in settings.kafka.topics] == list(RUNBOOK_TOPICS)
    assert settings.database.backup_retention_days >= 7


BAD_CONFIGS = [
    pytest.param("prod", {"role": "primry"}, ("drtopo:role", "'primry'", "'primary' or 'standby'"), id="role-typo"),
    pytest.param(
        "prod",
        {"retention": {"daily": {"days": -1}}},
        ("drtopo:retention.daily.days", "-1", "greater than 0"),
        id="negative-retention",
    ),
    pytest.param(
        "prod",
        {"objectives": {"regionFailure": {"rtoMinutes": 10, "rpoMinutes": 20}}},
        ("drtopo:objectives.regionFailure", "rpoMinutes 20", "longer than rtoMinutes 10"),
        id="rpo-longer-than-rto",
    ),
    pytest.param(
        "prod",
        {"kafka": {"bootstrapServers": "a:9092", "peerBootstrapServers": "b:9092", "topics": []}},
        ("drtopo:kafka", "'topics': []", "at least one topic"),
        id="empty-topics",
    ),
    pytest.param(
        "dr",
        {"primaryStackReference": None},
        ("role 'standby'", "no primary reference", "primaryStackReference"),
        id="standby-without-primary",
    ),
    pytest.param(
        "prod", {"peerRegion": "us-east-1"}, ("peerRegion", "'us-east-1'", "different region"), id="same-region"
    ),
    pytest.param(
        "prod",
        {"database": {"backupRetentionDays": 0}},
        ("drtopo:database.backupRetentionDays", "= 0", "greater"),
        id="no-backups",
    ),
    pytest.param(
        "prod",
        {"dns": {"zoneName": "z", "recordName": "r", "endpoint": "e", "requestIntervalSeconds": 15}},
        ("drtopo:dns", "15", "10 or 30"),
        id="health-interval",
    ),
    *(
        pytest.param(
            "prod",
            {"kubernetes": {"dumpSchedule": schedule}},
            (f"drtopo:kubernetes.dumpSchedule = {schedule!r}", expected),
            id=f"dump-schedule-{schedule}",
        )
        for schedule, expected in (
            ("*/15 * * * *", "does not run exactly once a day"),
            ("15 2 * * 1", "does not run exactly once a day"),
            ("15 2 * *", "has 4 fields; expected 5"),
            ("15 25 * * *", "hour '25' is out of range; expected 0-23"),
        )
    ),
    pytest.param(
        "prod",
        {"kubernetes": {"resourceExportSchedule": "61 * * * *"}},
        ("drtopo:kubernetes.resourceExportSchedule = '61 * * * *'", "minute"),
        id="export-schedule",
    ),
    *(
        pytest.param(
            "prod",
            {"database": {"engineVersion": version}},
            (f"drtopo:database.engineVersion = {version!r}", "supported PostgreSQL major (13, 14, 15, 16, 17)"),
            id=f"engine-version-{version}",
        )
        for version in ("banana", "12", "18", "15.x", "")
    ),
    pytest.param(
        "prod",
        {"database": {"engineVersion": "17"}},
        (
            "drtopo:kubernetes.backupImage",
            "'123456789012.dkr.ecr.us-east-1.amazonaws.com/drtopo/backup:1.0.0-pg15'",
            "-pg17",
            "PG_MAJOR=17",
        ),
        id="backup-image-of-another-major",
    ),
    pytest.param(
        "prod",
        {"service": {"eventTopics": ["OrderRejected", "OrderRejectd"]}},
        ("drtopo:service.eventTopics ['OrderRejectd']", "not in kafka.topics"),
        id="event-topic-not-a-topic",
    ),
    pytest.param(
        "prod",
        {"service": {"apiAuthEnv": "--token=abc"}},
        ("drtopo:service.apiAuthEnv", "'--token=abc'", "pattern"),
        id="token-variable-not-a-variable-name",
    ),
]


@pytest.mark.parametrize(("stack", "overrides", "expected"), BAD_CONFIGS)
def test_bad_config_fails_with_one_line_naming_key_and_value(
    stack: str, overrides: dict, expected: tuple[str, ...]
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(stack, overrides=overrides)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"Pulumi.{stack}.yaml: ")
    for fragment in expected:
        assert fragment in message


def test_a_supported_major_with_its_image_loads() -> None:
    kubernetes = {"backupImage": "registry/backup:2.0.0-pg17", "context": "biopro-us-east-1"}
    overrides = {"database": {"engineVersion": "17.2"}, "kubernetes": kubernetes}
    settings = load_settings("prod", overrides=overrides)
    assert settings.database.major == "17" and settings.kubernetes.backup_image.endswith("-pg17")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- config\n- role\n", "Pulumi.prod.yaml: the document is a list; expected a mapping with config:"),
        ("config:\n  - aws:region\n", "Pulumi.prod.yaml: config is a list; expected a mapping of keys to values"),
        ("just text\n", "Pulumi.prod.yaml: the document is a str; expected a mapping with config:"),
    ],
)
def test_a_stack_file_that_is_not_a_mapping_is_one_line_naming_the_file(tmp_path, text: str, expected: str) -> None:
    (tmp_path / "Pulumi.prod.yaml").write_text(text)
    with pytest.raises(SettingsError) as raised:
        load_settings("prod", project_dir=tmp_path)
    assert str(raised.value) == expected


def test_unknown_stack_and_unknown_key_are_named() -> None:
    with pytest.raises(SettingsError, match=r"stack 'staging' has no Pulumi.staging.yaml"):
        load_settings("staging")
    with pytest.raises(SettingsError, match=r"key 'other:thing' is unknown"):
        load_settings("prod", overrides={"other:thing": 1})


def test_a_standby_may_name_its_source_by_arn_instead_of_a_stack_reference() -> None:
    arn = "arn:aws:rds:us-east-1:123456789012:db:exception-collector-us-east-1"
    settings = load_settings("dr", overrides={"primaryStackReference": None, "replicationSourceArn": arn})
    assert settings.replication_source_arn == arn


def test_the_project_folder_is_the_commands_not_read_from_the_environment(tmp_path, monkeypatch) -> None:
    """The command reads DRTOPO_PROJECT_DIR into its context; the library only follows the folder it is given, so
    a drill's role switches land in its copy and the library never reads the variable behind the command's back."""
    import shutil

    from drtopo.settings import REPO_DIR, stack_file
    from scripts.cli import context_from_environment

    for name in ("Pulumi.prod.yaml", "Pulumi.dr.yaml"):
        shutil.copy(REPO_DIR / name, tmp_path / name)
    (tmp_path / "Pulumi.dr.yaml").write_text((tmp_path / "Pulumi.dr.yaml").read_text().replace("standby", "primary"))
    monkeypatch.setenv("DRTOPO_PROJECT_DIR", str(tmp_path))
    project = context_from_environment().project_dir
    assert project == tmp_path
    assert stack_file("dr", project) == tmp_path / "Pulumi.dr.yaml"
    assert load_settings("dr", project).role.value == "primary"
    assert load_settings("dr").role.value == "standby"
    monkeypatch.delenv("DRTOPO_PROJECT_DIR")
    assert context_from_environment().project_dir == REPO_DIR
