"""Running PostgreSQL's own programs: pg_dump, pg_restore and, as the server's OS user, pg_ctl and friends.

Client tools run as the caller over TCP (password through PGPASSWORD in their environment, never on a command
line); server binaries refuse root, so when we are root they run as the data directory's owner (`postgres`).
Failures raise `PgToolError` with the tool's last error line. `table_counts` gives the exact row counts that
verification compares.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

# Debian's layout, one folder per installed major (the lab's server, the backup image's PG_MAJOR client tools).
INSTALL_ROOT = Path("/usr/lib/postgresql")


class PgToolError(RuntimeError):
    """A PostgreSQL program failed; the message names it and its last error line."""


def installed_bin_dirs(root: Path = INSTALL_ROOT) -> list[Path]:
    """`<root>/<major>/bin` of every installed major, newest first (a newer pg_dump reads older servers)."""
    if not root.is_dir():
        return []
    majors = sorted((int(d.name) for d in root.iterdir() if d.name.isdigit() and (d / "bin").is_dir()), reverse=True)
    return [root / str(major) / "bin" for major in majors]


def binary(name: str, bin_dir: str | None = None, root: Path = INSTALL_ROOT) -> str:
    """The path of a PostgreSQL program: from `bin_dir`, else the newest installed major under `root`, else PATH."""
    folders = [Path(bin_dir)] if bin_dir else []
    for folder in [*folders, *installed_bin_dirs(root)]:
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        looked = ", ".join(str(f) for f in [*folders, root / "<major>" / "bin"])
        raise PgToolError(f"{name} not found in {looked} or on PATH; install the PostgreSQL client tools")
    return found


def as_user(user: str | None) -> dict[str, Any]:
    """subprocess keyword arguments that run a program as `user` when we are root (server binaries refuse root)."""
    if user and os.geteuid() == 0:
        return {"user": user, "group": user, "extra_groups": []}
    return {}


def run(
    args: Sequence[str],
    *,
    user: str | None = None,
    password: str | None = None,
    timeout: float | None = None,
    stdout: Any = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    log.debug("run %s%s", " ".join(map(str, args)), f" as {user}" if user else "")  # passwords go by environment
    proc = subprocess.run(
        list(args),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        cwd="/",
        **as_user(user),
    )
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        log.debug("%s exit %s: %s", Path(args[0]).name, proc.returncode, (proc.stderr or "").strip()[-2000:])
        raise PgToolError(f"{Path(args[0]).name} failed: {last}")
    return proc


def split_password(conninfo: str) -> tuple[str, str | None]:
    """A conninfo without its password (safe for argv), and the password (from the conninfo, else PGPASSWORD)."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    secret = params.pop("password", None) or os.environ.get("PGPASSWORD")
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()}), secret


def dump(
    conninfo: str, password: str | None, out: Path, snapshot: str | None = None, bin_dir: str | None = None
) -> None:
    """pg_dump in custom format (compressed, restorable selectively, readable by `pg_restore --list`)."""
    args = [binary("pg_dump", bin_dir), "--format=custom", "--no-password", f"--file={out}", "-d", conninfo]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    run(args, password=password)


def restore_list(path: Path, bin_dir: str | None = None) -> list[str]:
    """The archive's table of contents (`pg_restore --list`), entries only."""
    proc = run([binary("pg_restore", bin_dir), "--list", str(path)])
    return [line for line in proc.stdout.splitlines() if line and not line.startswith(";")]


def restore_read_all(path: Path, bin_dir: str | None = None) -> None:
    """Read and decompress every data block (to /dev/null): a truncated or corrupt archive fails here."""
    with open(os.devnull, "w") as sink:
        run([binary("pg_restore", bin_dir), "--file=-", str(path)], stdout=sink)


def restore(path: Path, conninfo: str, password: str | None, clean: bool = False, bin_dir: str | None = None) -> None:
    """pg_restore into the target database in one transaction, without owners or grants of the source."""
    args = [
        binary("pg_restore", bin_dir),
        "--no-password",
        "--no-owner",
        "--no-acl",
        "--single-transaction",
        "--exit-on-error",
        "-d",
        conninfo,
        str(path),
    ]
    if clean:
        args[1:1] = ["--clean", "--if-exists"]
    run(args, password=password)


def pg_ctl(bin_dir: str | None, user: str, *args: str, timeout: float = 120) -> str:
    return run([binary("pg_ctl", bin_dir), *args], user=user, timeout=timeout).stdout


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every ordinary user table (`schema.table`), as seen by the connection's snapshot."""
    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2"
    ).fetchall()
    counts: dict[str, int] = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[f"{schema}.{table}"] = int(conn.execute(query).fetchone()[0])
    return counts
