"""One run's notifications and record: what a recovery command (promote, failback, `restore pitr --cutover`) holds
from its start to its end.

`Notifier.open(...)` makes the SNS client of the region that is alive (`drtopo.aws.client("sns", region)`) and one
`Outbox` to that stack's incident topic; `send(kind, ...)` renders the stack's template and posts it, `retry()` at
each step sends what is still pending. Every attempt lands in the report (`record_notices`: sent a pass, not sent a
SKIP with the reason); nothing here raises: a notification never blocks or fails a recovery. A dry run makes its
Notifier with `send_nothing=True`. `write_record` writes the incident record in Markdown beside the JSON report.
`cutover_notifier` and `cutover_ended` are `restore pitr --cutover`'s start and end.
With `drtopo:notifications.statusPage` set, the same messages open, update and resolve the run's incident on the
status page (`statuspage.PageOutbox`; its API key from `secret`, the command's reader of the variable the settings
name), each attempt a `status page <kind>` check the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from drtopo.aws import client as aws_client
from drtopo.context import Context
from drtopo.errors import one_line
from drtopo.incident.facts import Facts, Figures, Incident, MessageKind
from drtopo.incident.messages import Message, render
from drtopo.incident.publish import Outbox, record_notices
from drtopo.incident.record import Notice, record_markdown, run_record
from drtopo.incident.statuspage import IDENTIFIED, PageOutbox, record_page_notices
from drtopo.outputs import StackOutputs
from drtopo.report import FAIL, Clock, Report
from drtopo.settings import Settings, load_settings

log = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def record_path(json_path: Path) -> Path:
    """The incident record beside a JSON report: same name, `.md`."""
    return json_path.with_suffix(".md")


@dataclass
class Notifier:
    """A run's incident: its messages to the incident topic of the region that is alive, and its record."""

    incident: Incident
    settings: Settings
    report: Report
    outbox: Outbox | None
    command: str = ""
    operator: str = ""
    run_started_at: datetime = field(default_factory=now)
    notices: list[Notice] = field(default_factory=list)
    # A dry run sends nothing and reports nothing sent; otherwise, without an outbox, why (each message a SKIP).
    dry_run: bool = False
    no_outbox: str = ""
    # The run's incident on the status page, when the settings name one (never on a dry run).
    page: PageOutbox | None = None

    @classmethod
    def open(
        cls,
        incident: Incident,
        settings: Settings,
        report: Report,
        topic_arn: str | None,
        *,
        command: str = "",
        operator: str = "",
        send_nothing: bool = False,
        secret: Callable[[str], str | None] | None = None,
    ) -> Notifier:
        """The notifier of a run on the incident's region (`incident.region`: the side that is alive). `secret`
        reads the status page's API key by the variable's name (`Context.secret`; none: the key is not set)."""
        outbox, reason, page = None, "", None
        status_page = settings.notifications.status_page
        if status_page is not None and not send_nothing:
            page = PageOutbox(status_page, secret(status_page.token_variable) if secret else None)
        if not send_nothing:
            try:
                outbox = Outbox(aws_client("sns", incident.region), topic_arn)
            except Exception as exc:  # a notification never stops a recovery
                log.exception("making the SNS client in %s", incident.region)
                reason = f"no SNS client in {incident.region}: {one_line(exc)}"
        return cls(
            incident, settings, report, outbox, command, operator, dry_run=send_nothing, no_outbox=reason, page=page
        )

    def _record(self, notices: list[Notice]) -> None:
        self.notices.extend(notices)
        record_notices(self.report, notices)

    def _page(
        self, at: datetime, kind: MessageKind | None = None, message: Message | None = None, status: str = IDENTIFIED
    ) -> None:
        """The same message to the status page (without one: what is pending there); never raises."""
        if self.page is None:
            return
        try:
            notices = self.page.post(kind, message, at, status) if kind and message else self.page.flush(at)
        except Exception:
            log.exception("updating the status page")
            return
        self.notices.extend(notices)
        record_page_notices(self.report, notices)

    def send(
        self,
        kind: MessageKind,
        event: str = "",
        figures: Figures | None = None,
        left_to_do: Iterable[str] = (),
        page_status: str = IDENTIFIED,
    ) -> None:
        """Render and post one message (and what is pending before it); never raises. `page_status`: an update's
        status on the status page, `identified` or `monitoring` (the fix is in, being watched)."""
        at = now()
        try:
            message = render(
                Facts(kind, self.incident, at, event, figures or Figures(), tuple(left_to_do)), self.settings
            )
        except Exception as exc:
            log.exception("rendering the %s message", kind)
            self._record([Notice(kind, at, False, f"cannot render the message: {one_line(exc)}")])
            return
        self._page(at, kind, message, page_status)
        if self.outbox is None:
            if not self.dry_run:
                self._record([Notice(kind, at, False, self.no_outbox)])
            return
        notices = self.outbox.post(kind, message, at)
        pending = self.outbox.pending
        if len(pending) > 1 and pending[-1][1] is message:
            # Not tried: an earlier message is still not sent, and the topic gets them in order.
            notices.append(Notice(kind, at, False, f"queued behind the {pending[0][0]} message, not sent yet"))
        self._record(notices)

    def retry(self, _step: str = "") -> None:
        """At a step: send what is still pending (a message not sent earlier); never raises."""
        if self.page is not None and self.page.pending:
            self._page(now())
        if self.outbox is None or not self.outbox.pending:
            return
        try:
            self._record(self.outbox.flush(now()))
        except Exception:
            log.exception("retrying the pending notifications")

    def write_record(self, json_path: Path | None) -> Path | None:
        """The incident record in Markdown beside the JSON report (none without one); never raises."""
        if json_path is None:
            return None
        path = record_path(json_path)
        try:
            record = run_record(
                self.report,
                incident=self.incident,
                command=self.command,
                operator=self.operator,
                run_started_at=self.run_started_at,
                ended_at=now(),
                notices=self.notices,
                report_path=str(json_path),
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(record_markdown(record, self.settings))
        except Exception:
            log.exception("writing the incident record %s", path)
            return None
        return path


def cutover_notifier(
    outputs: StackOutputs, ctx: Context, report: Report, *, command: str = "", operator: str = ""
) -> Notifier:
    """`restore pitr --cutover`'s incident: a database corruption of `outputs`' stack, told to its own region's
    incident topic (the region is alive: only its data was damaged)."""
    incident = Incident(
        scenario="database-corruption", stack=outputs.stack, region=outputs.region, started_at=now(), drill=ctx.drill
    )
    settings = load_settings(outputs.stack, ctx.project_dir)
    return Notifier.open(
        incident, settings, report, outputs.incident_topic_arn, command=command, operator=operator, secret=ctx.secret
    )


def cutover_ended(notifier: Notifier, clock: Clock) -> None:
    """The cutover's last message: a resolution with the RTO measured from the run's start when every check passed,
    else an update naming what failed."""
    report = notifier.report
    failed = [c.name for c in report.checks if c.outcome == FAIL]
    if failed:
        notifier.send(MessageKind.UPDATE, f"the cutover failed ({', '.join(failed)}); the damaged database stays")
        return
    rto = round(clock.elapsed(), 3)
    report.measured.setdefault("rto_seconds", rto)
    kept = report.measured.get("damaged_kept")
    left = [f"delete the damaged database kept at {kept} once the post-mortem is done"] if kept else []
    report.measured.setdefault("left_to_do", left)
    notifier.send(MessageKind.RESOLUTION, figures=Figures(rto_seconds=rto), left_to_do=left)
