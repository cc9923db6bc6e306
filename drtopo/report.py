"""What every command shares below its flags: exit codes, the report shape, timed steps and the reporter.

A command records checks in a `Report`; bad input raises `BadInput` (exit 2), an unsafe request `Unsafe` (exit 3).
The library never prints: what happens as it happens goes to the `Reporter` the command passes in (a `Clock`
hands it its timed lines), and everything else is returned for the command to render (`scripts/cli.py`, which also
turns errors into one line and keeps the details in the command's log file).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from drtopo.errors import one_line
from drtopo.settings import REPO_DIR, Settings, SettingsError, load_settings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNSAFE = 3


class BadInput(Exception):
    """Usage, config, outputs or time that cannot be used; exit 2."""


class Unsafe(Exception):
    """A request refused because carrying it out could lose data or split the brain; exit 3."""


class Reporter(Protocol):
    """Where the library tells what happens while it happens; the command decides how it is shown."""

    def progress(self, text: str) -> None:
        """A timed step or a wait (the terminal shows it on stderr)."""

    def info(self, text: str) -> None:
        """A line of the command's own output (the terminal shows it on stdout)."""

    def warning(self, text: str) -> None:
        """A line the operator must not miss (the terminal shows it on stderr)."""


class LogReporter:
    """A reporter that only logs: for library calls made with no command around them (tests, benchmarks)."""

    def progress(self, text: str) -> None:
        log.info("%s", text)

    def info(self, text: str) -> None:
        log.info("%s", text)

    def warning(self, text: str) -> None:
        log.warning("%s", text)


SILENT: Reporter = LogReporter()


def settings_for(stack: str, project_dir: Path = REPO_DIR) -> Settings:
    try:
        return load_settings(stack, project_dir)
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
    # The command's log file (every call it made, every traceback): named in the JSON and on an error's line.
    log: str | None = None

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
            **({"log": self.log} if self.log else {}),
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

    def table(self) -> str:
        """The checks as the terminal shows them, one a line, then the summary."""
        width = max([len(c.name) for c in self.checks] + [5])
        lines = []
        for c in self.checks:
            value = "" if c.value is None else f" value={_fmt(c.value)}"
            limit = "" if c.limit is None else f" limit={_fmt(c.limit)}"
            lines.append(f"{c.outcome.upper()}  {c.name:<{width}}  {c.detail}{value}{limit}")
        return "\n".join([*lines, self.summary()])

    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


class Clock:
    """Times each step and tells it with its start offset and duration: `[   1.23s] promote ... done in 0.25 s`."""

    def __init__(self, reporter: Reporter = SILENT, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.reporter = reporter
        self.quiet = quiet
        self.steps: list[dict[str, Any]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, message: str) -> None:
        line = f"[{self.elapsed():8.2f}s] {message}"
        if self.quiet:
            log.info("%s", line)
        else:
            self.reporter.progress(line)

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
                error=one_line(exc),
            )
            self.steps.append(record)
            self.say(f"{name} failed after {record['seconds']:.2f} s")
            raise
        record.update(ok=True, seconds=round(self.elapsed() - start, 3))
        self.steps.append(record)
        self.say(f"{name} done in {record['seconds']:.2f} s")
