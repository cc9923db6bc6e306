"""The program evaluated under Pulumi mocks once per distinct input in a test session, for the unit and policy tiers.

An evaluation takes about half a second and depends only on the settings, the outputs its StackReferences answer
with and the repository's stack files, none of which a test changes, so equal inputs give equal records. Each caller
gets its own deep copy: a test that edits what it got edits nothing another test sees. A test that patches the
program's own code (a module's constant) calls `evaluate` itself, as its patch is not part of the key here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from drtopo.settings import Settings
from evaluation.mock_program import Evaluation, evaluate
from policies.model import Resource
from policies.program import evaluated_resources

_EVALUATIONS: dict[tuple[str, str], Evaluation] = {}


def evaluation_of(settings: Settings, references: Mapping[str, Mapping[str, Any]] | None = None) -> Evaluation:
    """`evaluate(settings, references=references)`, run once per equal settings and references."""
    key = (settings.model_dump_json(), json.dumps(references, sort_keys=True))
    if key not in _EVALUATIONS:
        _EVALUATIONS[key] = evaluate(settings, references=references)
    return copy.deepcopy(_EVALUATIONS[key])


def program_resources(settings: Settings) -> list[Resource]:
    """`policies.program.program_resources(settings)` over the session's evaluation of `settings`."""
    return evaluated_resources(evaluation_of(settings))
