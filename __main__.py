"""The drtopo Pulumi program: load this stack's settings and declare its topology for its role.

`pulumi up -s prod` and `pulumi up -s dr` run this; a failover is the same program with the roles switched in
`Pulumi.<stack>.yaml`. Invalid configuration stops here with one line, before any resource is declared.
"""

import pulumi

from components.topology import build_topology
from drtopo.settings import SettingsError, load_settings

try:
    settings = load_settings(pulumi.get_stack())
except SettingsError as exc:
    raise pulumi.RunError(str(exc)) from None

for key, value in build_topology(settings).items():
    pulumi.export(key, value)
