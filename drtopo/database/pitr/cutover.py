"""The cutover after a restore: the restored instance takes the damaged one's place and endpoint, the damaged one is
kept under another name. Self-managed: the rename swap of data directories, the source's identity settings and its
staged WAL shipped through the source's own `archive_command`; RDS: the rename swap of instance identifiers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import psycopg

from drtopo.database import connect as db
from drtopo.database import pg_tools, reapply
from drtopo.database.pitr.recovery import no_quotes, staging_dir, stop_instance
from drtopo.outputs import SelfManagedPostgres, StackOutputs
from drtopo.report import BadInput, Clock, Report

# What the restored instance takes over from the source it replaces: where clients reach it, its name, archiving.
TAKEN_OVER = ("port", "listen_addresses", "unix_socket_directories", "cluster_name", "archive_mode", "archive_command")


def takeover_settings(source: dict[str, str]) -> str:
    """postgresql.auto.conf lines that give a restored instance the source's identity (pure; later lines win)."""
    missing = [name for name in TAKEN_OVER if name not in source]
    if missing:
        raise ValueError(f"source settings lack {missing}; expected all of {list(TAKEN_OVER)}")
    quoted = {name: source[name].replace("'", "''") for name in TAKEN_OVER}
    lines = [f"{name} = '{quoted[name]}'" for name in TAKEN_OVER]
    return "\n".join(["# drtopo cutover: this instance replaced the damaged one", *lines, ""])


def read_settings(conn: psycopg.Connection, names: tuple[str, ...] = TAKEN_OVER) -> dict[str, str]:
    rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)).fetchall()
    return {name: value for name, value in rows}


def wait_archived(conn: psycopg.Connection, timeout: float = 30) -> str:
    """Switch to a new segment and wait until the archiver has shipped the one it closed; returns its name."""
    segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        archived = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
        if archived is not None and archived[:24] >= segment:
            return str(segment)
        time.sleep(0.05)
    raise TimeoutError(f"segment {segment} was not archived within {timeout:.0f} s")


def archive_command_line(command: str, path: Path, name: str) -> str:
    """`archive_command` with PostgreSQL's substitutions (pure): %p the file's path, %f its name, %% a percent."""
    out, i = [], 0
    while i < len(command):
        pair = command[i : i + 2]
        if pair in ("%p", "%f", "%%"):
            out.append({"%p": str(path), "%f": name, "%%": "%"}[pair])
            i += 2
        else:
            out.append(command[i])
            i += 1
    return "".join(out)


def ship_staged(staged: Path, archive_command: str, user: str, parallel: int = 4) -> list[str]:
    """Archive the staged WAL files through the source's own `archive_command`, as `user`, so they reach wherever
    the source archives (its folder, its WAL bucket): history files first, then the segments, `parallel` at a
    time (as WAL-G's and pgBackRest's parallel pushes); an idempotent command makes a rerun harmless. Returns the
    names in archive order."""
    no_quotes(staged, "staging folder")
    if not archive_command.strip():
        raise BadInput("the source has no archive_command; expected archiving on for a restore that is cut over")
    files = sorted(staged.iterdir(), key=lambda p: (not p.name.endswith(".history"), p.name))

    def ship(path: Path) -> None:
        pg_tools.run(["sh", "-c", archive_command_line(archive_command, path, path.name)], user=user)

    for path in [f for f in files if f.name.endswith(".history")]:
        ship(path)
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="ship-staged") as pool:
        for future in [pool.submit(ship, f) for f in files if not f.name.endswith(".history")]:
            future.result()
    return [f.name for f in files]


def ensure_running(pg: SelfManagedPostgres, data_dir: Path) -> bool:
    """Start the instance in `data_dir` unless it runs; True when it had to be started."""
    try:
        pg_tools.pg_ctl(pg.bin_dir, pg.os_user, "status", "-D", str(data_dir))
        return False
    except pg_tools.PgToolError:
        pass
    pg_tools.pg_ctl(
        pg.bin_dir, pg.os_user, "start", "-D", str(data_dir), "-l", str(data_dir / "pitr.log"), "-w", "-t", "60"
    )
    return True


def swap_in(
    pg: SelfManagedPostgres, restored_dir: Path, source: dict[str, str], stamp: str, clock: Clock
) -> tuple[Path, list[str]]:
    """The self-managed rename swap: the restored instance takes the source's data directory and settings (so its
    endpoint), the damaged one is stopped and kept renamed. Returns the kept directory and the WAL files shipped."""
    data_dir = Path(pg.data_dir)
    kept = data_dir.with_name(f"{data_dir.name}-damaged-{stamp}")
    if kept.exists():
        raise BadInput(f"{kept} exists; expected a new name for the damaged data directory")
    with clock.step("stop the restored and the damaged instance"):
        pg_tools.pg_ctl(pg.bin_dir, pg.os_user, "stop", "-D", str(restored_dir), "-m", "fast", "-t", "60")
        stop_instance(pg, data_dir)
    with clock.step(f"keep the damaged data directory as {kept.name}; the restored one takes {data_dir.name}"):
        data_dir.rename(kept)
        restored_dir.rename(data_dir)
        with open(data_dir / "postgresql.auto.conf", "a") as conf:
            conf.write("\n" + takeover_settings(source))
        shipped = ship_staged(staging_dir(restored_dir), source["archive_command"], pg.os_user)
    with clock.step("start the restored instance in the source's place"):
        pg_tools.pg_ctl(
            pg.bin_dir, pg.os_user, "start", "-D", str(data_dir), "-l", str(data_dir / "pitr.log"), "-t", "60"
        )
    return kept, shipped


# ---- RDS rename swap ---------------------------------------------------------------------------------------------
# AWS, "Renaming a DB instance" (RDS User Guide, USER_RenameInstance): an existing name cannot be reused, so the
# damaged instance is renamed first; the restored one then takes its name, so the endpoint the service uses (it
# includes the identifier) now leads to it. The old DNS name is deleted at once (cached for minutes), the new one is
# effective in about 10 minutes, and the instance reboots after a rename. Tags and snapshots stay with an instance.
RDS_IDENTIFIER = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
RDS_IDENTIFIER_MAX = 63


def kept_identifier(source: str, target: datetime) -> str:
    """The name the damaged instance is kept under: `<source>-damaged-<T>`; BadInput if RDS would refuse it."""
    name = f"{source}-damaged-{target.astimezone(UTC):%Y%m%d%H%M%S}".lower()
    if len(name) > RDS_IDENTIFIER_MAX or not RDS_IDENTIFIER.match(name):
        raise BadInput(
            f"instance {source!r} cannot be kept as {name!r}; expected at most {RDS_IDENTIFIER_MAX} letters, "
            "digits and single hyphens, starting with a letter"
        )
    return name


def _rename(rds: Any, current: str, new: str, wait_seconds: float) -> None:
    rds.modify_db_instance(DBInstanceIdentifier=current, NewDBInstanceIdentifier=new, ApplyImmediately=True)
    rds.get_waiter("db_instance_available").wait(
        DBInstanceIdentifier=new, WaiterConfig={"Delay": 15, "MaxAttempts": max(1, int(wait_seconds / 15))}
    )


def rds_rename_swap(
    rds: Any, source: str, restored: str, target: datetime, clock: Clock, wait_seconds: float = 1800
) -> dict[str, Any]:
    """The damaged instance is renamed `<source>-damaged-<T>` (kept, deletion protection on, tagged), then the
    restored one takes `source`'s name and with it the endpoint."""
    kept = kept_identifier(source, target)
    with clock.step(f"rename the damaged instance {source} -> {kept} (kept, never deleted)"):
        _rename(rds, source, kept, wait_seconds)
        arn = rds.describe_db_instances(DBInstanceIdentifier=kept)["DBInstances"][0]["DBInstanceArn"]
        rds.modify_db_instance(DBInstanceIdentifier=kept, DeletionProtection=True, ApplyImmediately=True)
        rds.add_tags_to_resource(
            ResourceName=arn,
            Tags=[
                {"Key": "drtopo:replaced-by", "Value": restored},
                {"Key": "drtopo:damaged-at", "Value": target.isoformat()},
            ],
        )
    with clock.step(f"rename the restored instance {restored} -> {source} (the service's endpoint)"):
        _rename(rds, restored, source, wait_seconds)
    serving = rds.describe_db_instances(DBInstanceIdentifier=source)["DBInstances"][0]
    return {
        "kept": kept,
        "serving": source,
        "serving_arn": serving["DBInstanceArn"],
        "endpoint": serving.get("Endpoint"),
    }


# ---- the steps of a cutover, journalled ------------------------------------------------------------------------


class CutoverStep(StrEnum):
    """The steps of a cutover, in order: each is journalled (drtopo/failover/journal.py) by this name, which the
    crash tests' hook (`DRTOPO_CRASH_AFTER`) and the fault matrix's rows name too."""

    RESTORE = "restore"  # base backup + WAL to T in a new data directory, promoted (the restored instance)
    REAPPLY = "reapply"  # the writes after T re-applied while the damaged database still serves
    FENCE = "fence"  # the damaged database read-only, its sessions ended
    REAPPLY_FENCED = "reapply-fenced"  # what arrived until the fence, then validated: nothing after T missing
    SWAP = "swap"  # the restored instance takes the damaged one's data directory, settings and endpoint
    WRITABLE = "writable"  # wait until the restored instance takes writes at the source's endpoint
    STANDBY = "standby"  # the peer's standby rebuilt to follow the restored instance
    BASE_BACKUP = "base-backup"  # a base backup of the new timeline into the base backup folder and the WAL bucket


# Steps that change something outside the process: a journal holding none of them is dropped when a run stops, and
# each has its crash row in the fault matrix (bench/faults.py).
CUTOVER_MUTATING = frozenset(set(CutoverStep) - {CutoverStep.WRITABLE})
CUTOVER_PLAN = list(CutoverStep)


class Steps(Protocol):
    """How a cutover runs its steps: journalled (drtopo/backup/restore.py, resumable after a crash) or not (RDS,
    tests). `run` returns the step's record: the one it made, or the one the interrupted run journalled."""

    def run(self, name: CutoverStep, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]: ...

    def done(self, name: CutoverStep) -> bool: ...

    def forget(self, name: CutoverStep) -> None: ...


@dataclass
class Untracked:
    """Steps run in order, timed, journalled nowhere."""

    clock: Clock
    finished: set[str] = field(default_factory=set)

    def run(self, name: CutoverStep, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self.clock.step(name):
            record = fn()
        self.finished.add(name)
        return record

    def done(self, name: CutoverStep) -> bool:
        return name in self.finished

    def forget(self, name: CutoverStep) -> None:
        self.finished.discard(name)


# ---- re-apply the writes after T, across the fence ------------------------------------------------------------


def rows_to_reapply(plans: list[reapply.TablePlan], left: dict[str, list[Any]], limit: int = 50) -> list[str]:
    """A dry-run cutover's lines: per table, the rows it would re-apply and those it leaves as at T."""
    lines = []
    for plan in plans:
        keys = left.get(plan.table, [])
        shown = ", ".join(str(k) for k in keys[:limit]) + (f", … {len(keys) - limit} more" if len(keys) > limit else "")
        lines.append(
            f"would re-apply {len(keys)} rows of {plan.table} ({plan.key}: {shown or 'none'}); "
            f"{len(plan.to_copy) - len(keys)} written by the damage left as at T; "
            f"{len(plan.deleted)} deleted after T kept as at T"
        )
    return lines


def pass_record(result: reapply.ReapplyResult) -> dict[str, Any]:
    """One re-apply pass as its step journals it (JSON: the keys it copied per table as lists)."""
    return {**result.to_dict(), "copied_keys": {t: list(keys) for t, keys in result.copied_keys.items()}}


def _key(value: Any) -> Any:
    """A copied key as a set member again (a composite key comes back from JSON as a list)."""
    return tuple(value) if isinstance(value, list) else value


@dataclass
class ReapplyOutcome:
    """What the re-apply passes did (their journalled records), the fence they straddled, and what was read from
    both sides at the end."""

    passes: list[dict[str, Any]]
    fenced: dict[str, Any]
    fenced_at: float
    settled: Any
    fenced_from: float | None = None  # when the fence began: writes are refused from then on

    @property
    def copied(self) -> dict[str, set[Any]]:
        keys: dict[str, set[Any]] = {}
        for one in self.passes:
            for table, copied in one.get("copied_keys", {}).items():
                keys.setdefault(table, set()).update(_key(k) for k in copied)
        return keys

    @property
    def excluded(self) -> dict[str, int]:
        most: dict[str, int] = {}
        for one in self.passes:
            for t in one.get("tables", []):
                most[t["table"]] = max(most.get(t["table"], 0), t["excluded_damage"])
        return most

    def measured(self) -> dict[str, Any]:
        rows = {t: len(keys) for t, keys in self.copied.items()}
        return {
            "rows_reapplied": sum(rows.values()),
            "rows_reapplied_per_table": rows,
            "rows_excluded_as_damage": self.excluded,
            "rows_deleted_after_t_kept": {t["table"]: t["deleted_kept"] for t in self.passes[-1].get("tables", [])},
            "passes": [{k: v for k, v in p.items() if k != "copied_keys"} for p in self.passes],
            "fence": self.fenced,
            "fenced_at": self.fenced_at,
            "fenced_from": self.fenced_from,
        }


def reapply_until_fenced(
    outputs: StackOutputs,
    report: Report,
    clock: Clock,
    restored_conninfo: str,
    damage_xids: list[int],
    fence_damaged: Callable[[], dict[str, Any]],  # the damaged database's fence, with its proof
    settle: Callable[[psycopg.Connection, psycopg.Connection], Any],
    steps: Steps | None = None,
) -> ReapplyOutcome | None:
    """Re-apply while the damaged database serves, fence it, re-apply the rest, validate; None (and a failed check)
    when something acknowledged after T is still missing, in which case nothing is cut over (and a rerun does the
    last pass and the validation again). Each of the three is a step of `steps`: a resumed run reuses the passes the
    interrupted one journalled; a pass copies only what still differs, so no row is re-applied twice."""
    steps = steps or Untracked(clock)
    secret = db.password(outputs)

    def one_pass(name: str) -> dict[str, Any]:
        with (
            clock.step(name) as step,
            db.connect(outputs) as damaged,
            psycopg.connect(restored_conninfo, password=secret, autocommit=True) as new,
        ):
            result = reapply.reapply(damaged, new, damage_xids)
            step.update(rows=result.rows_reapplied, compare_seconds=round(result.compare_seconds, 3))
        return pass_record(result)

    first = steps.run(
        CutoverStep.REAPPLY, lambda: one_pass("re-apply the writes after T (the damaged database still serving)")
    )

    def fence() -> dict[str, Any]:
        started = time.time()
        fenced = fence_damaged()
        return {"fenced": fenced, "fenced_from": started, "fenced_at": time.time()}

    fence_record = steps.run(CutoverStep.FENCE, fence)
    report.check("damaged database fenced", True, fence_record["fenced"]["proof"])

    def last_pass() -> dict[str, Any]:
        done = one_pass("re-apply what arrived until the fence")
        with (
            clock.step("validate: nothing acknowledged after T is missing"),
            db.connect(outputs) as damaged,
            psycopg.connect(restored_conninfo, password=secret, autocommit=True) as new,
        ):
            left = reapply.unreplayed(damaged, new, damage_xids)
            settled = settle(damaged, new)
        return {"pass": done, "missing": {t: keys for t, keys in left.items() if keys}, "settled": settled}

    last = steps.run(CutoverStep.REAPPLY_FENCED, last_pass)
    missing = last["missing"]
    report.check(
        "restored holds every write after T",
        not missing,
        "no key inserted or changed after T is missing" if not missing else f"still differing: {missing}",
        value=sum(len(k) for k in missing.values()),
        limit=0,
    )
    if missing:
        steps.forget(CutoverStep.REAPPLY_FENCED)  # a rerun re-applies and validates again
        report.check("cutover", False, f"not cut over: the restored instance stays at {restored_conninfo}")
        return None
    return ReapplyOutcome(
        [first, last["pass"]],
        fence_record["fenced"],
        fence_record["fenced_at"],
        last["settled"],
        fence_record["fenced_from"],
    )


def undone_advice(undone: list[str], stack: str, peer: str) -> str:
    """What an operator does by hand for the steps an interrupted cutover left undone after its swap (pure; used when
    its journal is dropped with --restart, which cuts nothing over again)."""
    advice = {
        CutoverStep.WRITABLE: "check that the database takes writes (`python -m scripts.validate --stack "
        f"{stack} --expect primary`)",
        CutoverStep.STANDBY: f"rebuild {peer}'s standby from the restored server (pg_basebackup -R, or pg_rewind): "
        "it still follows the damaged timeline",
        CutoverStep.BASE_BACKUP: "take a base backup of the new timeline (pg_basebackup -F t -D DIR) and upload it "
        f"(`python -m scripts.wal base --stack {stack} DIR`), then `python -m scripts.wal check --stack {stack}`",
    }
    told = [advice[CutoverStep(step)] for step in undone if CutoverStep(step) in advice]
    return "; ".join(told) or "nothing"


def standby_not_here(report: Report, outputs: StackOutputs) -> None:
    """The skip when the peer of a cut-over `outputs` has no standby server on this host to rebuild."""
    report.skip(
        "standby",
        f"no self-managed outputs of the peer {outputs.peer_stack} beside this stack's: its standby still follows "
        "the damaged timeline; rebuild it (`scripts.failback --stack "
        f"{outputs.peer_stack}` or pg_basebackup)",
    )


# ---- the report of a cutover ---------------------------------------------------------------------------------------


def write_unavailable(fenced_from: float | None, writable_at: float | None) -> dict[str, Any] | None:
    """When writes were refused (pure): from the start of the fence to the moment the restored instance was writable
    at the endpoint (wall times the fence and writable steps journal, so a resumed run reports them too); None when
    the run did not get that far."""
    if fenced_from is None or writable_at is None:
        return None
    return {
        "from": datetime.fromtimestamp(fenced_from, UTC).isoformat(),
        "to": datetime.fromtimestamp(writable_at, UTC).isoformat(),
        "seconds": round(writable_at - fenced_from, 3),
    }


def sequences_moved(passes: list[dict[str, Any]]) -> dict[str, int]:
    """Every sequence a re-apply pass moved, with the value it was set to (the last pass's wins; pure)."""
    moved: dict[str, int] = {}
    for one in passes:
        moved.update(one.get("sequences", {}))
    return moved


def _per_table(counts: dict[str, int]) -> str:
    shown = ", ".join(f"{table} {n}" for table, n in counts.items() if n)
    return f" ({shown})" if shown else ""


def report_lines(measured: dict[str, Any]) -> list[str]:
    """What a cutover that swapped in shows on the terminal (pure, from its measured figures): rows re-applied, left
    as at T and left out as the damage's, the write-unavailability window, the sequences, the service's write probe,
    where it serves now."""
    reapplied = measured.get("rows_reapplied_per_table", {})
    kept = measured.get("rows_deleted_after_t_kept", {})
    damage = measured.get("rows_excluded_as_damage", {})
    lines = [
        f"re-applied {sum(reapplied.values())} rows written after T{_per_table(reapplied)}",
        f"written by the damage and left out (as at T): {sum(damage.values())} rows{_per_table(damage)}",
        f"deleted after T and kept as at T (back in the table): {sum(kept.values())} rows{_per_table(kept)}; "
        "a legitimate delete between T and the fence is among them: delete it again if it was meant",
    ]
    window = measured.get("write_unavailable")
    if window:
        lines.append(
            f"writes refused for {window['seconds']:.1f} s: fenced {window['from']}, writable again {window['to']}"
        )
    moved = measured.get("sequences_moved", {})
    lines.append(
        "sequences moved past the re-applied ids: " + ", ".join(f"{name} -> {value}" for name, value in moved.items())
        if moved
        else "sequences: none needed moving; each was already at or past the damaged database's value "
        "(PostgreSQL logs a sequence ahead of the values it hands out, so the restore lands past them)"
    )
    probe = measured.get("write_probe")
    if probe:
        lines.append(probe_line(probe))
    lines.append(f"serving: {measured.get('conninfo')} (data {measured.get('data_dir')}, log {measured.get('log')})")
    return lines


def probe_line(probe: dict[str, Any]) -> str:
    """The service write probe's line (pure, from drtopo.checks.service.write_probe's record)."""
    if not probe.get("acknowledged"):
        return (
            f"the service took NO write: POST {probe['url']} -> {probe['status'] or 'unreachable'} for "
            f"{probe['seconds']:.1f} s; check the service and its database connection"
        )
    left = (
        "removed"
        if probe.get("removed")
        else f"NOT removed ({probe.get('remove_error', 'gone already?')}): delete it by its id"
    )
    return (
        f"the service writes again: POST {probe['url']} -> 201 within {probe['seconds']:.1f} s "
        f"({probe['attempts']} attempt(s)), probe row id {probe['id']} ({probe['transaction_id']}) {left}"
    )


# ---- what a cutover leaves behind, and its removal -----------------------------------------------------------------
STAMP = r"\d{8}T\d{6}Z"  # T as a cutover names its folders: %Y%m%dT%H%M%SZ
SCRATCH_WAL = re.compile(rf"^pitr-{STAMP}\.wal$")


def left_behind(data_dir: Path) -> list[Path]:
    """What cutovers of the server in `data_dir` left beside it: the damaged copies `<data dir>-damaged-<T>` and the
    scratch WAL folders `pitr-<T>.wal` (already shipped to the archive), oldest first."""
    live = data_dir.resolve()
    damaged = re.compile(rf"^{re.escape(live.name)}-damaged-{STAMP}$")
    found = [p for p in live.parent.iterdir() if damaged.match(p.name) or SCRATCH_WAL.match(p.name)]
    return sorted(found, key=lambda p: p.name)


def removable(data_dir: Path, path: Path) -> Path:
    """`path` when a clean-up may remove it: a directory (not a link) beside the live data directory `data_dir`,
    named as a cutover names a damaged copy or its scratch WAL, with no server running in it. BadInput naming it
    otherwise, first of all when it is (or holds, or lies in) the live data directory."""
    live = data_dir.resolve()
    resolved = path.resolve()
    if resolved == live or live in resolved.parents or resolved in live.parents:
        raise BadInput(f"{path} is (or holds) the live data directory {live}; a clean-up never removes it")
    if path.is_symlink():
        raise BadInput(f"{path} is a symbolic link; expected the damaged copy or scratch WAL folder itself")
    if resolved.parent != live.parent:
        raise BadInput(f"{path} is not beside the data directory {live}; a clean-up removes only what a cutover left")
    damaged = re.compile(rf"^{re.escape(live.name)}-damaged-{STAMP}$")
    if not (damaged.match(resolved.name) or SCRATCH_WAL.match(resolved.name)):
        raise BadInput(
            f"{path} is not named as a cutover leaves things; expected {live.name}-damaged-<T> or pitr-<T>.wal"
        )
    if not resolved.is_dir():
        raise BadInput(f"{path} is not a directory (already removed?)")
    if (resolved / "postmaster.pid").exists():
        raise BadInput(f"{path} holds postmaster.pid: a server may run in it; stop it first (pg_ctl stop -D {path})")
    return resolved


def size_of(path: Path) -> int:
    """Bytes of the files under `path` (links not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
