"""The drtopo policy pack, as `pulumi preview --policy-pack policies/` runs it (this starts the analyzer server)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack import build_policies

PolicyPack(name="drtopo", policies=build_policies(), enforcement_level=EnforcementLevel.MANDATORY)
