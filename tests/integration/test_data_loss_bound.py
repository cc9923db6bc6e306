"""The data-loss bound of an unplanned promotion on the lab (issue 26): SIGKILL prod's database under writes, wait
beyond the RPO, and promote without --accept-data-loss.

The bound comes from the standby's record of its last contact (its server log's end of the replication stream) and
what it received and replayed, so waiting does not change it: measured again after a real wait longer than the RPO
and with the clock 20 minutes ahead, it is the same figure, of the order of the replication delay at the kill; and
every acknowledged write the promotion lost lies inside the window it reports.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.switchover import DB_ONLY, DnsFollowingWriter, connect, outputs, present, run_cli, wait_acks
from drtopo.database import database_for
from drtopo.database.loss_bound import BoundKind
from drtopo.database.replication import Lag, pg_lag
from drtopo.database.self_managed import server_log_tail
from lab.core import Lab

pytestmark = pytest.mark.lab

RPO_SECONDS = 3.0


@pytest.fixture(autouse=True)
def pair_rebuilt_afterwards(lab: Lab) -> Iterator[None]:
    """The test leaves prod killed and dr promoted; the tests after it (the drill refuses a lab with a server down)
    start from the baseline pair again, also when this one fails."""
    yield
    lab.reset_postgres()


def short_rpo_project(lab: Lab, tmp_path: Path) -> Path:
    """The lab's project with a region-failure RPO of a few seconds on dr, so a real wait can exceed it."""
    project = tmp_path / "project"
    shutil.copytree(lab.project_dir, project)
    with (project / "Pulumi.dr.yaml").open("a") as f:
        f.write(
            f"  drtopo:objectives:\n    regionFailure:\n      rtoMinutes: 240\n      rpoMinutes: {RPO_SECONDS / 60}\n"
        )
    return project


def stopped_bound(lab: Lab, timeout: float = 15) -> Lag:
    """dr's bound once its log records the end of the stream and it has replayed what it received (milliseconds
    after the kill)."""
    dr = database_for(outputs(lab, "dr"))
    deadline = time.monotonic() + timeout
    while (lag := dr.lag(None)).bound != BoundKind.STOPPED or "still to replay" in lag.detail:
        assert time.monotonic() < deadline, f"no stopped bound within {timeout:.0f} s: {lag}"
        time.sleep(0.1)
    return lag


def test_promote_after_a_crash_and_a_wait_beyond_the_rpo_reports_the_delay_at_the_kill(
    fresh_pg: Lab, tmp_path: Path
) -> None:
    project = short_rpo_project(fresh_pg, tmp_path)
    env = {"DRTOPO_STATE_DIR": str(tmp_path / "journal"), "DRTOPO_PROJECT_DIR": str(project)}
    writer = DnsFollowingWriter(fresh_pg)
    writer.start()
    wait_acks(writer, 100)
    fresh_pg.prod.postgres.kill()

    first = stopped_bound(fresh_pg)
    time.sleep(RPO_SECONDS + 2)  # beyond the RPO: the age of the last commit would now refuse
    again = database_for(outputs(fresh_pg, "dr")).lag(None)
    dr = outputs(fresh_pg, "dr")
    assert dr.self_managed is not None
    with connect(fresh_pg, "dr") as conn:
        ahead = pg_lag(
            conn,
            None,
            server_log=lambda c: server_log_tail(dr.self_managed, c),  # type: ignore[arg-type]
            now=datetime.now(UTC) + timedelta(minutes=20),
        )

    assert first.seconds is not None and first.seconds < RPO_SECONDS
    assert again == first
    assert (ahead.seconds, ahead.bound, ahead.last_contact) == (first.seconds, first.bound, first.last_contact)
    assert "primary's side closed the replication connection" in first.detail

    proc = run_cli(
        "promote",
        "--stack",
        "dr",
        "--outputs",
        fresh_pg.dr.outputs_path,
        *DB_ONLY,
        "--json",
        tmp_path / "report.json",
        env=env,
    )
    after = len(writer.acks)
    wait_acks(writer, after + 20)
    acks = writer.stop()

    assert proc.returncode == 0, proc.stderr
    measured = json.loads((tmp_path / "report.json").read_text())["measured"]
    assert measured["replica_lag_bound"] == BoundKind.STOPPED
    assert measured["replica_lag_source"].startswith("primary unreachable")
    assert measured["replica_lag_seconds"] == first.seconds
    assert measured["replica_lag_last_contact"] == first.last_contact
    # Every acknowledged write that dr lacks was committed inside the reported window (same host, one clock).
    window_start = datetime.fromisoformat(first.last_contact).timestamp() - first.seconds  # type: ignore[arg-type]
    lost = [a for a in acks if a.key not in present(fresh_pg, "dr", [a.key for a in acks])]
    assert all(a.stack == "prod" and a.at >= window_start for a in lost), (window_start, lost)
    assert any(a.stack == "dr" for a in acks)
