"""What every drill scenario works with: the lab, the stacks' settings and outputs, the client's view through DNS.

Scenarios run the real companion scripts in-process (their `main(argv)`), so a drill exercises exactly what an
operator would run; fault injection goes through the lab's API.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drtopo.aws import stack_client
from drtopo.outputs import StackOutputs, load_outputs
from drtopo.report import Clock
from drtopo.settings import Settings, load_settings
from lab.core import Lab
from scripts import backup, failback, promote, restore, validate

# The companion commands a scenario runs, by the name an operator types after `python -m scripts.`.
COMMANDS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "backup": backup.main,
    "failback": failback.main,
    "promote": promote.main,
    "restore": restore.main,
    "validate": validate.main,
}


@dataclass
class DrillContext:
    lab: Lab
    json_dir: Path
    quiet: bool = False
    _dns_cache: tuple[float, str] = field(default=(0.0, ""))

    def settings(self, stack: str) -> Settings:
        return load_settings(stack, self.lab.project_dir)

    def outputs(self, stack: str) -> StackOutputs:
        return load_outputs(self.lab.outputs_path(stack), stack)

    def outputs_path(self, stack: str) -> Path:
        return self.lab.outputs_path(stack)

    def clock(self) -> Clock:
        return Clock(quiet=self.quiet)

    def run(self, module: str, argv: Sequence[str]) -> int:
        """Run `python -m scripts.<module> ARGV` in-process and return its exit code."""
        return COMMANDS[module](list(argv))

    def active_service_url(self, ttl: float = 0.25) -> str:
        """The service URL a client reaches: the PRIMARY failover record's region, as Route53 answers (cached ttl)."""
        at, url = self._dns_cache
        if url and time.monotonic() - at < ttl:
            return url
        outputs = {s: self.outputs(s) for s in ("prod", "dr")}
        prod = outputs["prod"]
        route53 = stack_client("route53", prod)
        records = route53.list_resource_record_sets(HostedZoneId=prod.hosted_zone_id)["ResourceRecordSets"]
        name = prod.record_name.rstrip(".") + "."
        primary = next(
            (r["SetIdentifier"] for r in records if r["Name"] == name and r.get("Failover") == "PRIMARY"),
            None,
        )
        target = next((o for o in outputs.values() if o.set_identifier == primary), prod)
        self._dns_cache = (time.monotonic(), target.service_url)
        return target.service_url


# How long a scenario waits for a recovery beyond its objective: a recovery slower than the objective is still
# measured (and fails the drill) instead of being cut off where the objective ends.
MIN_PATIENCE_SECONDS = 60.0


def patience(objective_seconds: float) -> float:
    return max(objective_seconds, MIN_PATIENCE_SECONDS)


def wait_healthy(url: str, timeout: float) -> float:
    """Seconds until GET <url>/actuator/health answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/actuator/health", timeout=0.5) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} was not healthy within {timeout:.0f} s")


def surviving(conn: Any, keys: Sequence[str]) -> set[str]:
    """Which of `keys` (transaction ids) are present in the database."""
    if not keys:
        return set()
    rows = conn.execute(
        "SELECT transaction_id FROM interface_exceptions WHERE transaction_id = ANY(%s)", (list(keys),)
    ).fetchall()
    return {r[0] for r in rows}


def data_loss(acks: Sequence[Any], present: set[str], before: float) -> tuple[int, float]:
    """(rows lost, RPO seconds) for acknowledgements up to `before`: the window of acknowledged writes lost."""
    acked = [a for a in acks if a.at <= before]
    lost = [a for a in acked if a.key not in present]
    if not lost:
        return 0, 0.0
    kept = [a.at for a in acked if a.key in present and a.at < min(a2.at for a2 in lost)]
    newest_lost = max(a.at for a in lost)
    return len(lost), newest_lost - (max(kept) if kept else min(a.at for a in lost))
