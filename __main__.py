"""The drtopo Pulumi program: load this stack's settings, check its role against the live state, declare its topology.

`pulumi up -s prod` and `pulumi up -s dr` run this; a failover is the same program with the roles switched in
`Pulumi.<stack>.yaml`. Invalid configuration stops here, before any resource is declared: one line on stderr
(`error: <file>: <key> = <value>: <what is allowed>`) and exit code 2, never a traceback. A role the live state
contradicts (the role marker promote writes, the replica status of the stack's database; `drtopo.role_guard`) stops
here too, at preview, in one line and exit code 3, unless `drtopo:roleOverride` names that role.
"""

import os
import sys
from pathlib import Path

import pulumi

from components.live_state import read_live_state
from components.topology import build_topology
from drtopo.role_guard import judge
from drtopo.settings import REPO_DIR, SettingsError, load_settings

EXIT_BAD_CONFIG = 2
EXIT_REFUSED = 3

# The stack files' folder: the repository, or another copy of the project (DRTOPO_PROJECT_DIR, read here only).
PROJECT_DIR = Path(os.environ.get("DRTOPO_PROJECT_DIR") or REPO_DIR)

try:
    settings = load_settings(pulumi.get_stack(), PROJECT_DIR)
except SettingsError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)

verdict = judge(settings, read_live_state(settings))
for note in verdict.notes:
    pulumi.log.info(note)
if verdict.refusal:
    print(f"error: {verdict.refusal}", file=sys.stderr)
    sys.exit(EXIT_REFUSED)

for key, value in build_topology(settings).items():
    pulumi.export(key, value)
