"""The drtopo Pulumi program: load this stack's settings and declare its topology for its role.

`pulumi up -s prod` and `pulumi up -s dr` run this; a failover is the same program with the roles switched in
`Pulumi.<stack>.yaml`. Invalid configuration stops here, before any resource is declared: one line on stderr
(`error: <file>: <key> = <value>: <what is allowed>`) and exit code 2, never a traceback.
"""

import sys

import pulumi

from components.topology import build_topology
from drtopo.settings import SettingsError, load_settings

EXIT_BAD_CONFIG = 2

try:
    settings = load_settings(pulumi.get_stack())
except SettingsError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)

for key, value in build_topology(settings).items():
    pulumi.export(key, value)
