"""Each stack's alarms, alert topics and keys live in that stack's own region.

A region that fails takes with it everything kept there: a standby stack whose alarms, topics or keys sit in the
primary's region loses its alerting and its means to decrypt exactly when it takes over. pulumi-aws 7 puts a resource
in another region through its `region` input; absent, it is the stack's provider region.

One exception, named: RDS copies automated backups to the peer region only under a KMS key given by key ARN in the
destination region (StartDBInstanceAutomatedBackupsReplication, KmsKeyId: "the ARN for the KMS encryption key in the
destination AWS Region"), so the database component keeps that one key, tagged `drtopo:purpose=rds-backup-copies`,
in the peer region. And one more with fencing.mode lease: the witness bucket's key, tagged
`drtopo:purpose=lease-witness`, in the witness region beside its bucket (components/witness.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from drtopo.fencing.store import WITNESS_PURPOSE
from drtopo.settings import Settings
from policies import resource_types as types
from policies.model import Resource, Violation, violation
from policies.registry import resource_rule

REGIONAL = (types.METRIC_ALARM, types.SNS_TOPIC, types.SNS_TOPIC_SUBSCRIPTION, types.KMS_KEY, types.KMS_ALIAS)
# The tag value of the one key allowed outside the stack's region (components/database.py sets it).
RDS_BACKUP_COPIES_PURPOSE = "rds-backup-copies"


def _allowed_elsewhere(resource: Resource, settings: Settings, region: str) -> bool:
    if resource.type != types.KMS_KEY:
        return False
    tags = resource.get("tags") or {}
    purpose = tags.get("drtopo:purpose") if isinstance(tags, dict) else None
    if region == settings.peer_region:
        return purpose == RDS_BACKUP_COPIES_PURPOSE
    # The lease witness's key lives with its bucket in the witness region (components/witness.py).
    return region == settings.fencing.witness_region and purpose == WITNESS_PURPOSE


@resource_rule(
    "regional-resources-in-own-region",
    "Alarms, SNS topics and their subscriptions, KMS keys (and their aliases) live in the stack's own region.",
    REGIONAL,
)
def regional_resources_in_own_region(resource: Resource, settings: Settings) -> Iterator[Violation]:
    region = resource.get("region")
    if region in (None, "", settings.region) or _allowed_elsewhere(resource, settings, str(region)):
        return
    if resource.type == types.KMS_ALIAS and region in (settings.peer_region, settings.fencing.witness_region):
        # An alias goes where its key goes: the key's own check decides.
        return
    yield violation(
        resource,
        "region",
        region,
        f"{settings.region!r} (the stack's region) or not set",
        f"stack {settings.stack} would lose it with region {region}",
    )
