"""The role marker: which stack of a pair is primary, as the last promote or failback left it, kept in AWS itself.

The stack files say each stack's role too, but a checkout without promote's edit (CI, a colleague) would deploy the
old roles back. So promote's roles step also writes this marker, an SSM parameter `/drtopo/roles/<a>/<b>` (the
pair's stacks, sorted) holding `{"epoch", "primary", "standby", "at", "by"}`, into both regions: the promoted one
first (it survives), the old primary's when it answers. Every `pulumi up` reads it in both regions and takes the
newest epoch (`drtopo.role_guard`), so a marker left behind in a region that was down loses to the newer one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from drtopo.aws import client
from drtopo.outputs import StackOutputs
from drtopo.settings import Role

PREFIX = "/drtopo/roles"


class MarkerError(ValueError):
    """A marker's value that is not what promote writes."""


def marker_name(stack: str, peer_stack: str) -> str:
    """The SSM parameter of a pair of stacks: the same name whichever of the two asks."""
    a, b = sorted((stack, peer_stack))
    return f"{PREFIX}/{a}/{b}"


@dataclass(frozen=True)
class RoleMarker:
    epoch: int
    primary: str
    standby: str
    at: str
    by: str

    def role_of(self, stack: str) -> Role | None:
        return {self.primary: Role.PRIMARY, self.standby: Role.STANDBY}.get(stack)

    def render(self) -> str:
        return json.dumps(
            {"epoch": self.epoch, "primary": self.primary, "standby": self.standby, "at": self.at, "by": self.by},
            sort_keys=True,
        )

    def describe(self) -> str:
        return f"epoch {self.epoch}: {self.primary} primary, {self.standby} standby ({self.by}, {self.at})"


def parse(text: str, source: str = "role marker") -> RoleMarker:
    try:
        data = json.loads(text)
        marker = RoleMarker(int(data["epoch"]), str(data["primary"]), str(data["standby"]), data["at"], data["by"])
    except (ValueError, TypeError, KeyError) as exc:
        raise MarkerError(f"{source} is {text[:80]!r}; expected the JSON promote writes ({exc})") from None
    if marker.primary == marker.standby:
        raise MarkerError(f"{source} names {marker.primary} both primary and standby")
    return marker


def newest(markers: list[RoleMarker | None]) -> RoleMarker | None:
    found = [m for m in markers if m is not None]
    return max(found, key=lambda m: m.epoch) if found else None


def next_marker(previous: RoleMarker | None, primary: str, standby: str, by: str) -> RoleMarker:
    """The marker after a switch to `primary` (pure; `at` now)."""
    epoch = (previous.epoch if previous else 0) + 1
    return RoleMarker(epoch, primary, standby, datetime.now(UTC).isoformat(timespec="seconds"), by)


def read(region: str, name: str) -> RoleMarker | None:
    """The marker in `region`, None when there is none; errors reaching the region propagate."""
    try:
        value = client("ssm", region).get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ParameterNotFound":
            return None
        raise
    return parse(value, f"{name} in {region}")


def write(primary: StackOutputs, standby: StackOutputs, by: str) -> dict[str, Any]:
    """Write the marker of `primary` promoted over `standby` into both regions: `primary`'s must take it (an error
    propagates), `standby`'s when it answers. A rerun rewrites the same roles under the same epoch."""
    name = marker_name(primary.stack, standby.stack)
    seen: list[RoleMarker | None] = []
    unreachable: dict[str, str] = {}
    silent: set[str] = set()  # regions whose API gave no answer at all (a partition): not asked again
    for outputs in (primary, standby):
        try:
            seen.append(read(outputs.region, name))
        except (ClientError, BotoCoreError, MarkerError) as exc:
            unreachable[outputs.region] = str(exc).splitlines()[0]
            if isinstance(exc, BotoCoreError):
                silent.add(outputs.region)
    current = newest(seen)
    if current is not None and (current.primary, current.standby) == (primary.stack, standby.stack):
        marker = current  # already written by the interrupted run: the same epoch
    else:
        marker = next_marker(current, primary.stack, standby.stack, by)
    written = []
    for outputs in (primary, standby):
        if outputs is standby and outputs.region in silent:
            continue  # another wait of the client's whole bound for the same silence; reported unreachable
        try:
            client("ssm", outputs.region).put_parameter(
                Name=name,
                Value=marker.render(),
                Type="String",
                Overwrite=True,
                Description="drtopo: which stack of the pair is primary (written by promote and failback)",
            )
            written.append(outputs.region)
        except (ClientError, BotoCoreError) as exc:
            if outputs is primary:
                raise
            unreachable[outputs.region] = str(exc).splitlines()[0]
    return {"name": name, "marker": json.loads(marker.render()), "written": written, "unreachable": unreachable}
