"""`python -m policies.check --stack prod|dr`: run every policy rule over the program for that stack, no cloud needed.

The program is evaluated under Pulumi's mock runtime with the settings of `Pulumi.<stack>.yaml` (in
DRTOPO_PROJECT_DIR when set); `--role` evaluates the other role, as after a failover. Exit 0 when clean, 1 on any
mandatory violation, 2 when the configuration itself is invalid (one line naming the key and value).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from drtopo.settings import REPO_DIR, Role, Settings, SettingsError, load_settings
from policies.engine import evaluate_rules, mandatory
from policies.model import Enforcement, Violation
from policies.registry import RULES

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_CONFIG = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error as one line naming the bad value and what is allowed, exit 2."""
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIG)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m policies.check", description=__doc__.splitlines()[0])
    p.add_argument("--stack", required=True, help="any Pulumi.<name>.yaml naming its drtopo:peerStack")
    p.add_argument("--role", choices=[r.value for r in Role], help="evaluate this role instead of the stack file's")
    p.add_argument("--json", dest="json_path", type=Path, metavar="FILE", help="write the JSON report here")
    return p


def report(settings: Settings, violations: Sequence[Violation], resources: int, seconds: float) -> dict[str, Any]:
    """The scripts' report shape: one check per rule (failing ones per violation), plus what was measured."""
    checks: list[dict[str, Any]] = []
    for rule in RULES:
        broken = [v for v in violations if v.rule == rule.name]
        if not broken:
            checks.append(
                {"name": rule.name, "ok": True, "detail": rule.description, "enforcement": rule.enforcement.value}
            )
        for v in broken:
            checks.append(
                {
                    "name": rule.name,
                    "ok": False,
                    "detail": v.message,
                    "value": v.to_dict()["found"],
                    "limit": v.required,
                    "enforcement": v.enforcement.value,
                    "resource": v.resource_name,
                    "resource_type": v.resource_type,
                    "urn": v.urn,
                    "property": v.property,
                }
            )
    return {
        "ok": not mandatory(violations),
        "stack": settings.stack,
        "role": settings.role.value,
        "checks": checks,
        "measured": {
            "resources": resources,
            "rules": len(RULES),
            "mandatory_violations": len(mandatory(violations)),
            "advisory_violations": len(violations) - len(mandatory(violations)),
            "seconds": round(seconds, 3),
        },
    }


def print_report(data: dict[str, Any], out: TextIO) -> None:
    m = data["measured"]
    print(f"policy check: stack {data['stack']} (role {data['role']}), {m['resources']} resources", file=out)
    width = max(len(c["name"]) for c in data["checks"])
    for c in data["checks"]:
        mandatory_level = c["enforcement"] == Enforcement.MANDATORY.value
        status = "PASS" if c["ok"] else ("FAIL" if mandatory_level else "WARN")
        print(f"{status}  {c['name']:<{width}}  {c['detail']}", file=out)
    verdict = "OK" if data["ok"] else "FAILED"
    print(
        f"{verdict}: {m['mandatory_violations']} mandatory and {m['advisory_violations']} advisory violations "
        f"from {m['rules']} rules in {m['seconds']:.2f} s",
        file=out,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    from policies.program import program_resources

    try:
        project_dir = Path(os.environ.get("DRTOPO_PROJECT_DIR") or REPO_DIR)  # read here, at the command's edge
        settings = load_settings(args.stack, project_dir, overrides={"role": args.role} if args.role else None)
        # Settings validate every configured value (schedules included); the program may still refuse a
        # combination it alone can judge, before declaring anything.
        resources = program_resources(settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    violations = evaluate_rules(resources, settings)
    data = report(settings, violations, len(resources), time.monotonic() - started)
    print_report(data, sys.stdout)
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return EXIT_OK if data["ok"] else EXIT_VIOLATIONS


if __name__ == "__main__":
    sys.exit(main())
