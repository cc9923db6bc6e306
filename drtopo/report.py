"""What every command shares below its flags: exit codes, the report shape, timed steps and one-line errors.

A command does its work inside `main_guard` and records checks in a `Report`; bad input raises `BadInput`
(exit 2), an unsafe request `Unsafe` (exit 3), and either becomes one line on stderr, never a traceback.
The flags themselves are the commands' business (`scripts/cli.py`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from drtopo.settings import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNSAFE = 3


class BadInput(Exception):
    """Usage, config, outputs or time that cannot be used; exit 2."""


class Unsafe(Exception):
    """A request refused because carrying it out could lose data or split the brain; exit 3."""


def usage_error(prog: str, message: str) -> NoReturn:
    """A usage error as one line naming the bad value and what is allowed (argparse's own wording), exit 2."""
    print(f"error: {prog}: {message} (see --help)", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def settings_for(stack: str, project_dir: Path | None = None) -> Settings:
    try:
        return load_settings(stack) if project_dir is None else load_settings(stack, project_dir)
    except SettingsError as exc:
        raise BadInput(str(exc)) from None


PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class Check:
    """One check: it passed, failed, or was skipped (not checked at all, which is never a pass)."""

    name: str
    outcome: str
    detail: str = ""
    value: Any = None
    limit: Any = None

    @property
    def ok(self) -> bool:
        return self.outcome == PASS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class Report:
    """`{"ok", "checks": [{"name", "outcome", ...}], "measured": {...}}` as DESIGN.md fixes it.

    A skipped check is counted apart and never as a pass; the report is ok when nothing failed, and with `strict`
    only when nothing was skipped either.
    """

    checks: list[Check] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)
    strict: bool = False

    @property
    def ok(self) -> bool:
        bad = (FAIL, SKIP) if self.strict else (FAIL,)
        return not any(c.outcome in bad for c in self.checks)

    def count(self, outcome: str) -> int:
        return sum(c.outcome == outcome for c in self.checks)

    def record(self, name: str, outcome: str, detail: str = "", value: Any = None, limit: Any = None) -> Check:
        if outcome not in (PASS, FAIL, SKIP):
            raise ValueError(f"outcome {outcome!r} of check {name!r} is unknown; expected {PASS}, {FAIL} or {SKIP}")
        c = Check(name, outcome, detail, value, limit)
        self.checks.append(c)
        return c

    def check(self, name: str, ok: bool, detail: str = "", value: Any = None, limit: Any = None) -> Check:
        return self.record(name, PASS if ok else FAIL, detail, value, limit)

    def skip(self, name: str, detail: str, limit: Any = None) -> Check:
        """Record that `name` was not checked, and why."""
        return self.record(name, SKIP, detail, limit=limit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": {outcome: self.count(outcome) for outcome in (PASS, FAIL, SKIP)},
            "strict": self.strict,
            "checks": [c.to_dict() for c in self.checks],
            "measured": self.measured,
        }

    def write(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")

    def summary(self) -> str:
        """`OK: 9/10 checks passed, 1 skipped (a skip is not a pass)`."""
        skipped = self.count(SKIP)
        note = f", {skipped} skipped ({'--strict: a skip fails' if self.strict else 'a skip is not a pass'})"
        passed = f"{self.count(PASS)}/{len(self.checks)} checks passed"
        return f"{'OK' if self.ok else 'FAILED'}: {passed}{note if skipped else ''}"

    def print_table(self, out: Any = None) -> None:
        out = out or sys.stdout
        width = max([len(c.name) for c in self.checks] + [5])
        for c in self.checks:
            value = "" if c.value is None else f" value={_fmt(c.value)}"
            limit = "" if c.limit is None else f" limit={_fmt(c.limit)}"
            print(f"{c.outcome.upper()}  {c.name:<{width}}  {c.detail}{value}{limit}", file=out)
        print(self.summary(), file=out)

    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED

    def finish(self, json_path: Path | None, clock: Clock | None = None, strict: bool = False) -> int:
        """The end of every command: the steps' timings, the table, the JSON file; returns the exit code."""
        self.strict = self.strict or strict
        if clock is not None:
            self.measured["steps"] = clock.steps
        self.print_table()
        self.write(json_path)
        return self.exit_code()


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


class Clock:
    """Prints each step with its start offset and duration: `[   1.23s] promote ... done in 0.25 s`."""

    def __init__(self, out: Any = None, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.out = out or sys.stderr
        self.quiet = quiet
        self.steps: list[dict[str, Any]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.elapsed():8.2f}s] {message}", file=self.out, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        start = self.elapsed()
        record: dict[str, Any] = {"step": name, "start_seconds": round(start, 3)}
        self.say(f"{name} ...")
        try:
            yield record
        except BaseException as exc:
            record.update(
                ok=False,
                seconds=round(self.elapsed() - start, 3),
                error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            self.steps.append(record)
            self.say(f"{name} failed after {record['seconds']:.2f} s")
            raise
        record.update(ok=True, seconds=round(self.elapsed() - start, 3))
        self.steps.append(record)
        self.say(f"{name} done in {record['seconds']:.2f} s")


def main_guard(run: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a script's body, turning BadInput/Unsafe (and settings errors) into one line and an exit code."""
    try:
        return run(argv)
    except (BadInput, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Unsafe as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_UNSAFE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
