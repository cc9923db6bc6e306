"""The lab's WAL agent: pushes the files PostgreSQL archives into the stack's WAL bucket, for the `postgres` user.

On a database host the archive command runs `python -m scripts.wal push %p %f` itself. In the lab the servers run as
the `postgres` user, who cannot run the project's interpreter (it lives under root's home on these machines), so
the archive command copies the file into the lab's archive folder and then asks this agent, over one loopback TCP
connection, to push it: `push <stack> <file name> <data directory>` answered `ok` once `drtopo.backup.wal.push` has
stored it (or found the same bytes there), else `error: ...`. The archive command succeeds only on `ok`, so
"archived" still means "in the bucket", as with a direct push. The agent reads only files named like WAL archive
files from the lab's archive folder and pushes only for the lab's stacks, with their current outputs.

With `--parallel N` it archives as `scripts.wal push --parallel N` does (drtopo/backup/wal_ahead.py): beside the file
asked for, the next files the calling server (its data directory, which must lie under `--pg-base`) marked ready,
N at once, acknowledged in `--spool`/<data directory name>.

`python -m lab.wal_agent --port P --archive DIR --outputs DIR --endpoint URL --stacks prod,dr [--parallel N
--spool DIR --pg-base DIR]`
"""

from __future__ import annotations

import argparse
import socketserver
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drtopo.backup import wal, wal_ahead
from drtopo.errors import one_line
from drtopo.outputs import load_outputs
from drtopo.report import BadInput
from lab import aws, process

REQUEST_TIMEOUT_S = 60.0

SCRIPT = """#!/bin/bash
# drtopo lab: hand one archived WAL file to the lab's WAL agent (lab/wal_agent.py), which pushes it into the
# stack's WAL bucket; succeeds only once the bucket holds it. Usage: {path} STACK FILE_NAME (run by the archiver,
# whose working directory is the server's data directory)
exec 3<>/dev/tcp/{host}/{port} || exit 1
printf 'push %s %s %s\\n' "$1" "$2" "$PWD" >&3
IFS= read -r -t {timeout} reply <&3 || {{ echo "drtopo wal agent: no answer for $2" >&2; exit 1; }}
[ "$reply" = ok ] || {{ echo "drtopo wal agent: $reply" >&2; exit 1; }}
"""


def client_script(path: Path, port: int) -> str:
    """The archive command's client (bash's /dev/tcp, so it needs nothing the `postgres` user cannot run)."""
    return SCRIPT.format(path=path, host=process.LOOPBACK, port=port, timeout=int(REQUEST_TIMEOUT_S))


class Agent:
    def __init__(
        self,
        archive: Path,
        outputs_dir: Path,
        endpoint: str,
        stacks: Sequence[str],
        parallel: int = 1,
        spool: Path | None = None,
        pg_base: Path | None = None,
    ) -> None:
        self.archive, self.outputs_dir, self.endpoint, self.stacks = archive, outputs_dir, endpoint, tuple(stacks)
        self.parallel, self.spool, self.pg_base = parallel, spool, pg_base
        self._clients: dict[str, Any] = {}  # one S3 client per region (building one takes longer than a push)
        self._lock = threading.Lock()

    def _s3(self, region: str) -> Any:
        with self._lock:
            if region not in self._clients:
                self._clients[region] = aws.client("s3", region, self.endpoint)
            return self._clients[region]

    def handle(self, line: str) -> str:
        """One request line -> the reply line (never raises)."""
        parts = line.split()
        if len(parts) not in (3, 4) or parts[0] != "push":
            return f"error: {line.strip()[:80]!r} is not a request; expected 'push <stack> <file name> [<data dir>]'"
        _, stack, name, *data_dir = parts
        if stack not in self.stacks:
            return f"error: stack {stack!r} is not one of the lab's {', '.join(self.stacks)}"
        try:
            wal.archive_name(name)
            outputs = load_outputs(self.outputs_dir / f"{stack}.json", stack)
            path = self.archive / name
            if not path.is_file():
                return f"error: {name} is not in {self.archive}"
            s3 = self._s3(outputs.region)
            wal_dir = self._wal_dir(data_dir[0]) if data_dir else None
            if wal_dir is None or self.spool is None:
                wal.push(s3, outputs, path, name)
            else:
                spool = wal_ahead.Spool(self.spool / wal_dir.parent.name)
                wal_ahead.push(s3, outputs, wal_dir, name, path, spool, self.parallel)
        except BadInput as exc:
            return f"error: {exc}"
        except Exception as exc:  # any failure is an answer: PostgreSQL retries
            return f"error: {type(exc).__name__}: {one_line(exc)}"
        return "ok"

    def _wal_dir(self, data_dir: str) -> Path | None:
        """The calling server's pg_wal when look-ahead is on and its data directory is one of the lab's (else None:
        the file alone is pushed)."""
        if self.parallel <= 1 or self.pg_base is None or self.spool is None:
            return None
        folder = Path(data_dir).resolve()
        if folder.parent != self.pg_base.resolve() or not (folder / "pg_wal" / "archive_status").is_dir():
            return None
        return folder / "pg_wal"


def serve(agent: Agent, port: int) -> None:
    class Handler(socketserver.StreamRequestHandler):
        timeout = REQUEST_TIMEOUT_S

        def handle(self) -> None:
            line = self.rfile.readline(512).decode(errors="replace")
            self.wfile.write((agent.handle(line) + "\n").encode())

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer((process.LOOPBACK, port), Handler) as server:
        server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.wal_agent", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--archive", type=Path, required=True)
    p.add_argument("--outputs", type=Path, required=True, help="the lab's outputs folder (<stack>.json)")
    p.add_argument("--endpoint", required=True, help="the emulator's endpoint URL")
    p.add_argument("--stacks", required=True, help="comma-separated stacks it pushes for")
    p.add_argument("--parallel", type=wal_ahead.parallel_count, default=1, help="uploads at once (default 1)")
    p.add_argument("--spool", type=Path, help="where uploads ahead are acknowledged")
    p.add_argument("--pg-base", type=Path, help="the folder holding the lab's data directories")
    args = p.parse_args(argv)
    agent = Agent(
        args.archive, args.outputs, args.endpoint, args.stacks.split(","), args.parallel, args.spool, args.pg_base
    )
    serve(agent, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
