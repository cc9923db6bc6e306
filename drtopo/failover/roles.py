"""What the stack files say after a failover: each stack's `drtopo:role`, and the demoted stack's database generation.

Failover is a role switch (DESIGN.md): promote sets `primary` on the promoted stack and `standby` on its peer. RDS
cannot demote an instance, so the stack that turns standby also gets its next `drtopo:database.generation` (a new
replica the program declares) and its old generation appended to `retiredGenerations` (kept, protected,
snapshotted). `role_switch` computes that from the settings (pure); `stack_text` writes it into a stack file's
text, keeping every comment and every other key as written; `switch_roles` does both for the two files.

A demoted stack advances its generation only while its file still says `primary`, and each file is written in one
atomic replace holding both the role and the generation: a rerun (an interrupted promote resumed from its journal)
finds the file already `standby` and changes nothing. The files live in DRTOPO_PROJECT_DIR (the lab points it at
its own copy).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drtopo.settings import PROJECT, Role, Settings, load_settings, stack_file

_ROLE_LINE = re.compile(
    r"^(?P<lead>[ \t]+drtopo:role:[ \t]*)(?P<value>[\"']?[A-Za-z]+[\"']?)(?P<tail>[ \t]*(#.*)?)$", re.M
)
_DATABASE_LINE = re.compile(r"^(?P<indent>[ \t]+)drtopo:database:(?P<rest>.*)$", re.M)
DATABASE_KEY = f"{PROJECT}:database"


class RoleRewriteError(ValueError):
    """The stack file cannot be rewritten: no single `drtopo:role:` line, or a database block it cannot edit."""


@dataclass(frozen=True)
class StackChange:
    """What one stack file says after the switch: its role and its database generation (current and retired)."""

    stack: str
    role: Role
    generation: int
    retired: tuple[int, ...]

    def describe(self) -> str:
        retired = f", retiredGenerations {list(self.retired)}" if self.retired else ""
        return f"Pulumi.{self.stack}.yaml: role {self.role.value}, database.generation {self.generation}{retired}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "role": self.role.value,
            "generation": self.generation,
            "retired": list(self.retired),
        }


def role_switch(promoted: Settings, demoted: Settings) -> tuple[StackChange, StackChange]:
    """The two stack files after `promoted` becomes the primary and `demoted` its standby (pure).

    The promoted stack keeps its generation: its replica became the primary in place. The demoted stack, while it
    is still `primary`, moves to its next generation and retires the one it held; once `standby` (a rerun), it
    stays as it is.
    """
    kept = promoted.database
    primary = StackChange(promoted.stack, Role.PRIMARY, kept.generation, kept.retired_generations)
    db = demoted.database
    if demoted.is_primary:
        standby = StackChange(demoted.stack, Role.STANDBY, db.generation + 1, (*db.retired_generations, db.generation))
    else:
        standby = StackChange(demoted.stack, Role.STANDBY, db.generation, db.retired_generations)
    return primary, standby


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


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _set_field(lines: list[str], start: int, end: int, key_indent: int, field: str, value: str) -> list[str]:
    """Set `field: value` among the block lines `lines[start:end]` (the children of the line before `start`)."""
    children = [i for i in range(start, end) if _content(lines[i])]
    child = _indent(lines[children[0]]) if children else key_indent + 2
    pad = lines[children[0]][:child] if children else " " * child
    for i in children:
        if _indent(lines[i]) == child and re.match(rf"{re.escape(field)}:(\s|$)", lines[i][child:]):
            # The field's own value may continue below it: a block sequence (at its indent or deeper) or a mapping.
            stop = i + 1
            while stop < end and (
                not _content(lines[stop]) or _indent(lines[stop]) > child or lines[stop][child:].startswith("- ")
            ):
                stop += 1
            while stop > i + 1 and not _content(lines[stop - 1]):
                stop -= 1  # keep blank lines and comments that follow the field
            return [*lines[:i], f"{pad}{field}: {value}", *lines[stop:]]
    return [*lines[:start], f"{pad}{field}: {value}", *lines[start:]]


def set_generation(text: str, generation: int, retired: tuple[int, ...], source: str = "stack file") -> str:
    """Return `text` with `drtopo:database.generation` and `.retiredGenerations` set; everything else as written.

    A block `drtopo:database:` mapping gets the two fields set in place (inserted first when missing); a flow
    mapping is rewritten as a flow mapping; a file with none gets a block right after its `drtopo:role:` line.
    Generation 0 with nothing retired is the default and is not written where the file does not say it.
    """
    if not _writes_generation(_config(text, source).get(DATABASE_KEY), generation, retired):
        return text
    fields = {"generation": str(generation), "retiredGenerations": f"[{', '.join(map(str, retired))}]"}
    matches = list(_DATABASE_LINE.finditer(text))
    if len(matches) > 1:
        raise RoleRewriteError(f"{source}: found {len(matches)} '{DATABASE_KEY}:' lines; expected at most one")
    lines = text.split("\n")
    if not matches:
        role = list(_ROLE_LINE.finditer(text))
        if len(role) != 1:
            raise RoleRewriteError(f"{source}: found {len(role)} 'drtopo:role:' lines; expected exactly one")
        at = text.count("\n", 0, role[0].start()) + 1
        pad = role[0].group("lead")[: _indent(role[0].group("lead"))]
        block = [f"{pad}{DATABASE_KEY}:", *(f"{pad}  {k}: {v}" for k, v in fields.items())]
        return "\n".join([*lines[:at], *block, *lines[at:]])
    m = matches[0]
    row = text.count("\n", 0, m.start())
    rest = m.group("rest").split("#", 1)[0].strip()
    if rest.startswith("{"):
        current = yaml.safe_load(rest) or {}
        merged = {**current, "generation": generation, "retiredGenerations": list(retired)}
        flow = yaml.safe_dump(merged, default_flow_style=True, sort_keys=False, width=1_000_000).strip()
        lines[row] = f"{m.group('indent')}{DATABASE_KEY}: {flow}"
        return "\n".join(lines)
    if rest:
        raise RoleRewriteError(f"{source}: {DATABASE_KEY} is {rest!r}; expected a mapping")
    key_indent = _indent(lines[row])
    end = row + 1
    while end < len(lines) and (not _content(lines[end]) or _indent(lines[end]) > key_indent):
        end += 1
    while end > row + 1 and not _content(lines[end - 1]):
        end -= 1
    # Set retiredGenerations first, then generation: both land first in the block, generation on top.
    for field in ("retiredGenerations", "generation"):
        before = len(lines)
        lines = _set_field(lines, row + 1, end, key_indent, field, fields[field])
        end += len(lines) - before
    return "\n".join(lines)


def _writes_generation(database: Any, generation: int, retired: tuple[int, ...]) -> bool:
    """Whether the generation is written: always once it is not the default, or where the file already says it."""
    said = isinstance(database, dict) and bool({"generation", "retiredGenerations"} & database.keys())
    return bool(generation or retired or said)


def _config(text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RoleRewriteError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise RoleRewriteError(f"{source}: expected a mapping with config:")
    return config


def stack_text(text: str, change: StackChange, source: str = "stack file") -> str:
    """`text` saying what `change` says (role and database generation), every other key and comment as written;
    the result is parsed back and refused unless exactly those values changed."""
    new = set_generation(set_role(text, change.role, source), change.generation, change.retired, source)
    before, after = _config(text, source), _config(new, source)
    database = dict(before.get(DATABASE_KEY) or {})
    if _writes_generation(database, change.generation, change.retired):
        database.update(generation=change.generation, retiredGenerations=list(change.retired))
    expected = {**before, f"{PROJECT}:role": change.role.value}
    if database:
        expected[DATABASE_KEY] = database
    if after != expected:
        raise RoleRewriteError(f"{source}: rewriting role and database generation changed other keys; edit it by hand")
    return new


def write_stack(change: StackChange, project_dir: Path | None = None) -> bool:
    """Write `change` into its stack file in one atomic replace; returns whether the file changed."""
    path = stack_file(change.stack, project_dir)
    text = path.read_text()
    new = stack_text(text, change, source=path.name)
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return True


def planned_switch(
    primary_stack: str, standby_stack: str, project_dir: Path | None = None
) -> tuple[StackChange, StackChange]:
    """What `switch_roles` would write, from the stack files as they are now (for --dry-run and the report)."""
    return role_switch(load_settings(primary_stack, project_dir), load_settings(standby_stack, project_dir))


def switch_roles(primary_stack: str, standby_stack: str, project_dir: Path | None = None) -> list[str]:
    """Make `primary_stack` the primary and `standby_stack` its standby at its next database generation; returns
    the files that changed (none on a rerun)."""
    changed = []
    for change in planned_switch(primary_stack, standby_stack, project_dir):
        if write_stack(change, project_dir):
            changed.append(str(stack_file(change.stack, project_dir)))
    return changed


def pulumi_commands(primary_stack: str, standby_stack: str) -> list[str]:
    """What an operator runs next so the declared state converges in place on the new roles."""
    # --refresh: the promotion happened outside Pulumi, and the provider refuses to promote an instance that is no
    # longer a replica (PromoteReadReplica needs a read replica), so the state must read the live instance first.
    return [
        f"git commit Pulumi.{primary_stack}.yaml Pulumi.{standby_stack}.yaml   # CI's next pulumi up reads them",
        f"pulumi preview --refresh --stack {primary_stack} --diff   # expect updates only: no replace, no delete",
        f"pulumi up --refresh --stack {primary_stack}",
        f"pulumi up --refresh --stack {standby_stack}   # when its region answers: creates its next-generation replica",
    ]
