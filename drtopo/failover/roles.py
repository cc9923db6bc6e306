"""Switch a stack's `drtopo:role` in `Pulumi.<stack>.yaml`, keeping every comment and every other key as written.

Failover is a role switch (DESIGN.md): promote sets `primary` on the promoted stack and `standby` on its peer, and
the next `pulumi up` converges in place. The rewrite is a pure text function so that it can be tested alone; the
files live in DRTOPO_PROJECT_DIR (the lab points it at its own copy).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from drtopo.settings import Role, stack_file

_ROLE_LINE = re.compile(
    r"^(?P<lead>[ \t]+drtopo:role:[ \t]*)(?P<value>[\"']?[A-Za-z]+[\"']?)(?P<tail>[ \t]*(#.*)?)$", re.M
)


class RoleRewriteError(ValueError):
    """The stack file has no single `drtopo:role:` line under `config:` to rewrite."""


def set_role(text: str, role: Role, source: str = "stack file") -> str:
    """Return `text` with its one `drtopo:role:` value replaced by `role`; everything else byte for byte."""
    matches = list(_ROLE_LINE.finditer(text))
    if len(matches) != 1:
        raise RoleRewriteError(f"{source}: found {len(matches)} 'drtopo:role:' lines; expected exactly one")
    m = matches[0]
    return f"{text[: m.start('value')]}{Role(role).value}{text[m.end('value') :]}"


def current_role(text: str, source: str = "stack file") -> Role:
    matches = list(_ROLE_LINE.finditer(text))
    if len(matches) != 1:
        raise RoleRewriteError(f"{source}: found {len(matches)} 'drtopo:role:' lines; expected exactly one")
    value = matches[0].group("value").strip("\"'")
    try:
        return Role(value)
    except ValueError:
        raise RoleRewriteError(f"{source}: drtopo:role {value!r} is unknown; expected primary or standby") from None


def write_role(stack: str, role: Role, project_dir: Path | None = None) -> bool:
    """Set `stack`'s role on disk (atomically); returns whether the file changed."""
    path = stack_file(stack, project_dir)
    text = path.read_text()
    new = set_role(text, role, source=path.name)
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return True


def switch_roles(primary_stack: str, standby_stack: str, project_dir: Path | None = None) -> list[str]:
    """Make `primary_stack` the primary and `standby_stack` its standby; returns the files that changed."""
    changed = []
    for stack, role in ((primary_stack, Role.PRIMARY), (standby_stack, Role.STANDBY)):
        if write_role(stack, role, project_dir):
            changed.append(str(stack_file(stack, project_dir)))
    return changed


def pulumi_commands(primary_stack: str, standby_stack: str) -> list[str]:
    """What an operator runs next so the declared state converges in place on the new roles."""
    # --refresh: the promotion happened outside Pulumi, and the provider refuses to promote an instance that is no
    # longer a replica (PromoteReadReplica needs a read replica), so the state must read the live instance first.
    return [
        f"pulumi preview --refresh --stack {primary_stack} --diff   # expect updates only: no replace, no delete",
        f"pulumi up --refresh --stack {primary_stack}",
        f"pulumi up --refresh --stack {standby_stack}   # when {standby_stack}'s region is reachable",
    ]
