"""The scheduled readiness check (pure): what the standby's cluster runs every hour and the alarm on what it
publishes. The program declares it (components/readiness_check.py) and the lab seeds the same alarm in the emulator
(lab/aws.py), both from here.

The job runs `python -m scripts.status --stack <standby> --outputs <dir>/<standby>.json --publish`: the peer's
outputs sit beside its own (`<peer>.json`, as `drtopo.outputs.peer_outputs` finds them) and both stack files in the
same folder, so it judges the pair exactly as the command does on an operator's machine. `--publish` puts the run
into the configuration bucket (`readiness/<stack>/latest.json` and one object per run) and the metrics
`drtopo/Readiness ItemFailing` (per item) and `ItemsFailing` (per stack) into CloudWatch (`drtopo.readiness.publish`).

The alarm watches `ItemsFailing` of the stack: ALARM when one item failed in the last run, and, with missing data
treated as breaching, when no run published within the period (a check that stopped running alarms too). The period
is the schedule's hour and a half, so every window holds one run whatever minute it started and however long it ran.
"""

from __future__ import annotations

from typing import Any

from drtopo.readiness.publish import FAILING_METRIC, NAMESPACE, PREFIX

JOB = "readiness-check"
CONFIG_MAP = "drtopo-readiness-config"
CONFIG_DIR = "/etc/drtopo"
# Hourly, off the hour (the dump jobs and most other cron traffic run on it).
SCHEDULE = "23 * * * *"
SCHEDULE_INTERVAL_SECONDS = 3600
# One run per window at any start minute and run time: the interval and half of it again.
ALARM_PERIOD_SECONDS = SCHEDULE_INTERVAL_SECONDS * 3 // 2


def outputs_file(stack: str) -> str:
    """The file of a stack's outputs in the job's folder (`<stack>.json`: the peer's is found beside it)."""
    return f"{stack}.json"


def command(stack: str) -> list[str]:
    """What the job runs: the status command of `stack`, publishing its run."""
    return [
        "python",
        "-m",
        "scripts.status",
        "--stack",
        stack,
        "--outputs",
        f"{CONFIG_DIR}/{outputs_file(stack)}",
        "--publish",
    ]


def readiness_prefix(stack: str) -> str:
    """The only keys the job writes in the configuration bucket (`drtopo.readiness.publish.readiness_key`)."""
    return f"{PREFIX}{stack}/"


def alarm_name(stack: str) -> str:
    return f"drtopo-{stack}-readiness"


def alarm_spec(stack: str) -> dict[str, Any]:
    """The alarm as CloudWatch's PutMetricAlarm takes it (without its actions): ALARM when the stack's last run
    failed an item or no run published in the period."""
    return {
        "AlarmName": alarm_name(stack),
        "AlarmDescription": (
            f"A readiness item of {stack} is at risk (the metric {NAMESPACE} ItemFailing names it, "
            f"s3://<config bucket>/{readiness_prefix(stack)}latest.json says why), or the hourly readiness check "
            f"published nothing for {ALARM_PERIOD_SECONDS // 60} minutes"
        ),
        "Namespace": NAMESPACE,
        "MetricName": FAILING_METRIC,
        "Dimensions": [{"Name": "Stack", "Value": stack}],
        "Statistic": "Maximum",
        "Period": ALARM_PERIOD_SECONDS,
        "EvaluationPeriods": 1,
        "DatapointsToAlarm": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "breaching",
    }
