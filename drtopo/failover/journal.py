"""A resumable step journal: what a failover or failback has already done, kept on disk after every step.

An interrupted run (crash, lost terminal, killed process) leaves its journal open; the next run of the same operation
on the same stack resumes after the last completed step and reuses what those steps measured. A finished run closes
its journal (kept beside the open one, timestamped, as an audit trail). Journals live in the command's state
folder (`Context.state_dir`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drtopo.report import Clock


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Journal:
    """One operation's journal: `{"operation", "stack", "started_at", "steps": {name: {...}}, "closed_at"}`."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def open(cls, operation: str, stack: str, directory: Path) -> Journal:
        """The open journal of `operation` on `stack` in `directory`, or a new one."""
        path = directory / f"{operation}-{stack}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            if not data.get("closed_at"):
                return cls(path, data)
        return cls(path, {"operation": operation, "stack": stack, "started_at": _now(), "steps": {}})

    @property
    def resumed(self) -> bool:
        return bool(self.data["steps"])

    def age_hours(self, now: datetime | None = None) -> float:
        """Hours since the run this journal records was started."""
        started = datetime.fromisoformat(self.data["started_at"])
        return ((now or datetime.now(UTC)) - started).total_seconds() / 3600

    def forget(self, step: str) -> None:
        """Drop a step's record so that a resumed run does it again."""
        if self.data["steps"].pop(step, None) is not None:
            self._save()

    def done(self, step: str) -> bool:
        return bool(self.data["steps"].get(step, {}).get("ok"))

    def result(self, step: str) -> dict[str, Any]:
        return dict(self.data["steps"].get(step, {}).get("result") or {})

    def record(self, step: str, result: dict[str, Any], seconds: float) -> None:
        self.data["steps"][step] = {"ok": True, "finished_at": _now(), "seconds": round(seconds, 3), "result": result}
        self._save()

    def close(self) -> Path:
        """Mark the operation finished and move the journal aside; the next run starts a new one."""
        self.data["closed_at"] = _now()
        self._save()
        stamp = self.data["closed_at"].replace(":", "").replace("-", "")
        done = self.path.with_name(f"{self.path.stem}.{stamp}.json")
        os.replace(self.path, done)
        return done

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w") as f:
            json.dump(self.data, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


StepFn = Callable[[], dict[str, Any]]


class Runner:
    """Runs named steps in order, each timed by the Clock, skipping those the journal already holds; `after_step`
    is called with each step's name once it is journalled (the crash tests' hook)."""

    def __init__(self, journal: Journal | None, clock: Clock, after_step: Callable[[str], None] | None = None) -> None:
        self.journal = journal
        self.clock = clock
        self.after_step = after_step
        self.results: dict[str, dict[str, Any]] = {}
        self.timeline: list[dict[str, Any]] = []

    def run(self, name: str, fn: StepFn) -> dict[str, Any]:
        if self.journal is not None and self.journal.done(name):
            result = self.journal.result(name)
            self.clock.say(f"{name}: done by the interrupted run (journal), skipped")
            self.timeline.append({"step": name, "resumed": True, "at_seconds": round(self.clock.elapsed(), 3)})
        else:
            started = time.monotonic()
            with self.clock.step(name) as rec:
                result = fn() or {}
            if self.journal is not None:
                self.journal.record(name, result, time.monotonic() - started)
            self.timeline.append(
                {"step": name, "seconds": rec["seconds"], "at_seconds": round(self.clock.elapsed(), 3)}
            )
            if self.after_step is not None:
                self.after_step(name)
        self.results[name] = result
        return result
