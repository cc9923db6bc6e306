"""Physical names of what a stack creates, derived from its region (and the database generation), never its role.

A role switch must not rename (and so replace) anything; the lab names its emulated resources with the same
functions so that scripts find them by the names the program gives.
"""

from __future__ import annotations

from drtopo.settings import Settings

BUCKET_PURPOSES = ("dumps", "wal", "config", "audit")


def db_identifier(settings: Settings, generation: int | None = None) -> str:
    """The RDS instance of `generation` (default: the current one); generation 0 keeps the original name."""
    generation = settings.database.generation if generation is None else generation
    suffix = f"-g{generation}" if generation else ""
    return f"exception-collector-{settings.region}{suffix}"


def bucket_name(settings: Settings, purpose: str) -> str:
    if purpose not in BUCKET_PURPOSES:
        raise ValueError(f"bucket purpose {purpose!r} is unknown; expected one of {', '.join(BUCKET_PURPOSES)}")
    return f"drtopo-{settings.region}-{purpose}"


def set_identifier(settings: Settings) -> str:
    return settings.region


def health_check_name(settings: Settings) -> str:
    return f"{settings.service.name}-{settings.region}"


def parameter_group_name(settings: Settings) -> str:
    """By region and major version: a major upgrade brings a new group beside the old one."""
    return f"drtopo-{settings.region}-postgres{settings.database.major}"


# The takeover signal (DNS failover through the data plane): a CloudWatch metric and its alarm in each stack's own
# region. A stack that takes over publishes 1 there; the peer's failover record is healthy only while it is not 1.
TAKEOVER_NAMESPACE = "drtopo/Failover"
TAKEOVER_METRIC = "Takeover"


def takeover_alarm_name(region: str) -> str:
    """The alarm that is ALARM while the stack of `region` has taken the traffic over from its peer."""
    return f"drtopo-{region}-takeover"


def incident_topic_name(region: str) -> str:
    """The SNS topic in `region` that the tools tell an incident's start, updates and resolution to."""
    return f"drtopo-{region}-incidents"


def db_secret_name(region: str) -> str:
    """The database master secret of the stack in `region`; its replica in the peer region has the same name.
    (No `-` plus six characters at its end: Secrets Manager would read that as an ARN's random suffix.)"""
    return f"drtopo/{region}/database/master"


def config_prefix(stack: str) -> str:
    """Where the configuration export of `stack` writes in the config bucket (drtopo/backup/config.py)."""
    return f"config/{stack}/"
