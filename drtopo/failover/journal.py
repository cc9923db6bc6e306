"""A resumable step journal: what a failover, failback or cutover has done, kept after every step beside the lock.

An interrupted run (crash, lost terminal, killed process, a laptop gone with its operator) leaves its journal open;
the next run of the same operation on the same stack resumes after the last completed step and reuses what those
steps recorded (typed records, drtopo/failover/results.py). The journal lives where the failover lock lives: in the
target stack's configuration bucket (`journals/<operation>-<stack>.json`), written with S3 conditional writes (the
first with `If-None-Match: *`, each later one with `If-Match` on the ETag this run last wrote), so any operator who
holds the lock can resume from any machine, and a run whose journal someone else has since written stops rather than
overwrite it. Every write is also copied to the command's state folder (`Context.state_dir`) as the local audit
trail; a finished run closes both (kept aside, timestamped).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError

from drtopo.failover.plan import Step
from drtopo.failover.results import RESULTS, StepResult
from drtopo.report import Clock, Unsafe

log = logging.getLogger(__name__)

JOURNAL_PREFIX = "journals/"
_PRECONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _stamp(at: str) -> str:
    return at.replace(":", "").replace("-", "")


class JournalStore(Protocol):
    """Where the shared copy of a journal lives (the local copy is the journal's own business)."""

    where: str

    def load(self) -> dict[str, Any] | None: ...

    def save(self, data: dict[str, Any]) -> None: ...

    def close(self, data: dict[str, Any]) -> str: ...

    def discard(self) -> None: ...


@dataclass
class S3JournalStore:
    """The journal object in a bucket, beside the failover lock (drtopo/failover/lock.py)."""

    s3: Any
    bucket: str
    name: str  # <operation>-<stack>
    encryption: dict[str, str] = field(default_factory=dict)
    etag: str | None = None  # of the version this run read or last wrote; None: there is none yet

    @property
    def key(self) -> str:
        return f"{JOURNAL_PREFIX}{self.name}.json"

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def load(self) -> dict[str, Any] | None:
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                self.etag = None
                return None
            raise
        self.etag = got["ETag"]
        return json.loads(got["Body"].read())

    def save(self, data: dict[str, Any]) -> None:
        condition = {"IfMatch": self.etag} if self.etag else {"IfNoneMatch": "*"}
        try:
            put = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=json.dumps(data, indent=2, default=str).encode(),
                ContentType="application/json",
                **condition,
                **self.encryption,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _PRECONDITION_FAILED:
                raise Unsafe(
                    f"the journal {self.where} was written by another run since this one read it (did someone take "
                    "the lock with --break-lock?); this run stops so as not to overwrite it"
                ) from None
            raise
        self.etag = put["ETag"]
        log.debug("journal %s written (etag %s)", self.where, self.etag)

    def close(self, data: dict[str, Any]) -> str:
        """Keep the finished journal aside under its closing time; the open key goes, so the next run starts anew."""
        closed = f"{JOURNAL_PREFIX}{self.name}.{_stamp(data['closed_at'])}.json"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=closed,
            Body=json.dumps(data, indent=2, default=str).encode(),
            ContentType="application/json",
            **self.encryption,
        )
        self.discard()
        return f"s3://{self.bucket}/{closed}"

    def discard(self) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.key)
        self.etag = None


@dataclass
class Journal:
    """One operation's journal: `{"operation", "stack", "started_at", "steps": {name: {...}}, "closed_at"}`.

    `path` is the local copy; `store` the shared one (None: local only, as in unit tests). The shared copy wins
    when both exist: it is the one every operator sees."""

    path: Path
    data: dict[str, Any]
    store: JournalStore | None = None
    # The record type of each step name: the failover's by default; another operation (the corruption cutover,
    # drtopo/backup/restore.py) journals its own steps through the same journal.
    results: Mapping[str, type[StepResult]] = field(default_factory=lambda: RESULTS)

    @classmethod
    def open(
        cls,
        operation: str,
        stack: str,
        directory: Path,
        store: JournalStore | None = None,
        results: Mapping[str, type[StepResult]] = RESULTS,
    ) -> Journal:
        """The open journal of `operation` on `stack` (from `store` when given, else `directory`), or a new one."""
        path = directory / f"{operation}-{stack}.json"
        data = store.load() if store is not None else None
        if data is None and store is None and path.is_file():
            data = json.loads(path.read_text())
        if data is not None and not data.get("closed_at"):
            return cls(path, data, store, results)
        fresh = {"operation": operation, "stack": stack, "started_at": _now(), "steps": {}}
        return cls(path, fresh, store, results)

    @property
    def where(self) -> str:
        """Where an operator finds it: the shared copy when there is one."""
        return self.store.where if self.store is not None else str(self.path)

    @property
    def resumed(self) -> bool:
        return bool(self.data["steps"])

    def age_hours(self, now: datetime | None = None) -> float:
        """Hours since the run this journal records was started."""
        started = datetime.fromisoformat(self.data["started_at"])
        return ((now or datetime.now(UTC)) - started).total_seconds() / 3600

    def refuse_stale(self, max_age_hours: float, setting: str, check_first: str) -> None:
        """An interrupted run older than `max_age_hours` (the value of `setting`) is not resumed: the world has moved
        on since it stopped, so the operator looks (`check_first`) and reruns with --restart. Unsafe naming the
        journal, its age and the limit; nothing for a new journal or a recent one."""
        if self.resumed and self.age_hours() > max_age_hours:
            raise Unsafe(
                f"the interrupted {self.data['operation']} of {self.data['stack']} started "
                f"{self.data['started_at']} ({self.age_hours():.1f} h ago, beyond {setting} {max_age_hours:g}; "
                f"journal {self.where}); {check_first}, then rerun with --restart"
            )

    def forget(self, step: Step) -> None:
        """Drop a step's record so that a resumed run does it again."""
        if self.data["steps"].pop(step, None) is not None:
            self._save()

    def done(self, step: Step) -> bool:
        return bool(self.data["steps"].get(step, {}).get("ok"))

    def steps_done(self) -> set[Step]:
        return {Step(name) for name, rec in self.data["steps"].items() if rec.get("ok")}

    def result(self, step: Step) -> StepResult:
        """The typed record the interrupted run journalled for `step`."""
        return self.results[step].from_dict(self.data["steps"][step].get("result") or {})

    def record(self, step: Step, result: StepResult, seconds: float) -> None:
        self.data["steps"][step] = {
            "ok": True,
            "finished_at": _now(),
            "seconds": round(seconds, 3),
            "result": result.as_dict(),
        }
        self._save()

    def close(self) -> str:
        """Mark the operation finished and keep it aside (shared and local); the next run starts a new one.
        Returns where the closed journal is."""
        self.data["closed_at"] = _now()
        self._write_local()
        done = self.path.with_name(f"{self.path.stem}.{_stamp(self.data['closed_at'])}.json")
        os.replace(self.path, done)
        return self.store.close(self.data) if self.store is not None else str(done)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        if self.store is not None:
            self.store.discard()

    def _save(self) -> None:
        if self.store is not None:
            self.store.save(self.data)
        self._write_local()

    def _write_local(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w") as f:
            json.dump(self.data, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


StepFn = Callable[[], StepResult]


class Runner:
    """Runs named steps in order, each timed by the Clock, skipping those the journal already holds; `after_step`
    is called with each step's name once it is journalled (the crash tests' hook)."""

    def __init__(self, journal: Journal | None, clock: Clock, after_step: Callable[[str], None] | None = None) -> None:
        self.journal = journal
        self.clock = clock
        self.after_step = after_step
        self.results: dict[Step, StepResult] = {}
        self.timeline: list[dict[str, Any]] = []

    def run(self, name: Step, fn: StepFn) -> StepResult:
        if self.journal is not None and self.journal.done(name):
            result = self.journal.result(name)
            self.clock.say(f"{name}: done by the interrupted run (journal), skipped")
            self.timeline.append({"step": str(name), "resumed": True, "at_seconds": round(self.clock.elapsed(), 3)})
        else:
            started = time.monotonic()
            with self.clock.step(name) as rec:
                result = fn()
            if self.journal is not None:
                self.journal.record(name, result, time.monotonic() - started)
            self.timeline.append(
                {"step": str(name), "seconds": rec["seconds"], "at_seconds": round(self.clock.elapsed(), 3)}
            )
            if self.after_step is not None:
                self.after_step(str(name))
        self.results[name] = result
        return result

    def resumed_last(self) -> bool:
        return bool(self.timeline and self.timeline[-1].get("resumed"))
