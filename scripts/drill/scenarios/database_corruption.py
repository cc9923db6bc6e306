"""database-corruption: a table is damaged at a known time; `scripts.restore pitr` brings it back to just before.

Under write load a bad statement deletes a third of `interface_exceptions` at T (the database's own clock). Writes
stop at detection; the database is restored to T from the base backup and the WAL archive into a new instance.
RTO runs from the damage until the restored instance accepts connections; RPO is the window of writes acknowledged
before T that the restored database lacks. Writes acknowledged after the damage are reported apart: they are
the rows an operator re-applies from the damaged database.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg

from drtopo.database import connect as db
from drtopo.database import pitr
from drtopo.database.connect import connect
from scripts.drill.loadgen import RowWriter
from scripts.drill.report import ScenarioResult
from scripts.drill.scenarios.context import DrillContext, data_loss, surviving

NAME = "database-corruption"
DAMAGE = "DELETE FROM interface_exceptions WHERE id % 3 = 0"


def run(ctx: DrillContext, result: ScenarioResult) -> None:
    clock = ctx.clock()
    outputs = ctx.outputs("prod")
    writer = RowWriter(lambda: outputs.service_url, rate=50, prefix="corrupt")
    with clock.step("steady load on the primary"):
        writer.start()
        time.sleep(3)
    with clock.step(f"damage at a known time: {DAMAGE}"), connect(outputs) as conn, conn.transaction():
        # One snapshot for T and the damage: the DELETE sees exactly the rows committed before T, so every row it
        # removes is one a restore to T must bring back (rows committed after T are not its business).
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        target_time = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        failure_at = time.time()
        damaged = conn.execute(DAMAGE).rowcount
    result.measured.update(failure_at_seconds=round(clock.elapsed(), 3), rows_damaged=damaged)
    with clock.step("detection: writes stop"):
        time.sleep(1)
        stats = writer.stop()
    report_path = ctx.json_dir / "database-corruption-pitr.json"
    restored_dir = ctx.json_dir / "pitr-data"
    with clock.step("scripts.restore pitr --time T"):
        code = ctx.run(
            "restore",
            [
                "pitr",
                "--stack",
                "prod",
                "--outputs",
                str(ctx.outputs_path("prod")),
                "--time",
                target_time.isoformat(),
                "--target-dir",
                str(restored_dir),
                "--json",
                str(report_path),
            ],
        )
    ready_at = time.time()
    result.checks.check("restore pitr succeeded", code == 0, f"exit code {code}", code, 0)
    if code != 0:
        return
    measured = json.loads(report_path.read_text())["measured"]
    try:
        with (
            clock.step("count acknowledged rows in the restored database"),
            psycopg.connect(measured["conninfo"], password=db.password(outputs), autocommit=True) as conn,
        ):
            present = surviving(conn, [a.key for a in stats.acks])
            damaged_back = conn.execute("SELECT count(*) FROM interface_exceptions WHERE id % 3 = 0").fetchone()[0]
    finally:
        assert outputs.self_managed is not None
        pitr.stop_instance(outputs.self_managed, Path(measured["data_dir"]))
    lost, rpo = data_loss(stats.acks, present, before=failure_at)
    after = [a for a in stats.acks if a.at > failure_at]
    result.measured.update(
        rto_seconds=round(ready_at - failure_at, 3),
        rpo_seconds=round(rpo, 3),
        rows_lost=lost,
        rows_acknowledged=len(stats.acks),
        rows_after_damage_to_reapply=len(after),
        restore_seconds=measured.get("restore_seconds"),
    )
    result.checks.check(
        "damaged rows are back", damaged_back >= damaged, f"{damaged_back} rows with id % 3 = 0", damaged_back, damaged
    )
    result.checks.check(
        "nothing after T replayed",
        not any(a.key in present for a in after if a.at > failure_at + 0.5),
        f"{sum(a.key in present for a in after)} of {len(after)} writes after the damage are present",
    )
    result.steps = clock.steps
