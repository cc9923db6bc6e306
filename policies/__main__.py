"""The drtopo policy pack, as `pulumi preview --policy-pack policies/` runs it (this starts the analyzer server)."""

import sys
from pathlib import Path

# Run as a script, the pack's own folder would come first on sys.path; the repository root must instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.pack import build_policies  # noqa: E402

PolicyPack(name="drtopo", policies=build_policies(), enforcement_level=EnforcementLevel.MANDATORY)
