"""The status page: one incident per run on an Atlassian Statuspage page, opened, updated and resolved through its
incidents API. Optional (`drtopo:notifications.statusPage`); a status page that cannot be reached never blocks or
fails a recovery.

The shape, from the Statuspage REST API (https://developer.statuspage.io, "Authentication", "Create an incident",
"Update an incident"; also https://doers.statuspage.io/api/v1/incidents/):

- authentication: the header `Authorization: OAuth <api key>`; bodies are JSON wrapped in `{"incident": {...}}`
  with a matching `Content-Type: application/json`;
- create: `POST {apiUrl}/v1/pages/{page_id}/incidents` with `{"incident": {"name", "status": "investigating",
  "body"}}`; the answer is the incident, its `id` among its fields;
- update: `PATCH {apiUrl}/v1/pages/{page_id}/incidents/{incident_id}` with `{"incident": {"status", "body"}}`, the
  status `identified` or `monitoring` while it lasts and `resolved` at its end (a realtime incident's statuses are
  investigating, identified, monitoring, resolved).

`create_request`, `update_request` and `page_request` are pure: a `PageRequest` (method, URL, headers, JSON body)
from the run's rendered message and kind. `send` performs one with `urllib.request` and a short timeout and never
raises: a `PageDelivery` sent (with the incident's id) or not sent (the reason). `PageOutbox` keeps a run's messages
in order, as `publish.Outbox` does for the incident topic: a create not sent stays pending and is tried again at the
command's next step, before any update, which needs the incident's id.

The API key comes from the command (`scripts/cli.py` reads the environment variable the settings name): nothing here
reads the environment, and the key appears in no reason, log line or repr.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from drtopo.errors import one_line
from drtopo.incident.facts import MessageKind
from drtopo.incident.messages import Message
from drtopo.incident.record import STATUS_PAGE, Notice
from drtopo.report import Report
from drtopo.settings import StatusPage

log = logging.getLogger(__name__)

# A status page that does not answer holds each step at most this long (then: not sent, tried at the next step).
TIMEOUT_SECONDS = 5.0
# Statuspage's realtime incident statuses.
INVESTIGATING, IDENTIFIED, MONITORING, RESOLVED = "investigating", "identified", "monitoring", "resolved"
UPDATE_STATUSES = (IDENTIFIED, MONITORING)
# Statuspage caps an incident's name at 255 characters.
NAME_LIMIT = 255


@dataclass(frozen=True)
class PageRequest:
    """One call to the Statuspage API: method, URL, headers (the key among them: kept out of the repr) and body."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)
    body: dict[str, Any]

    def data(self) -> bytes:
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class PageDelivery:
    """The fate of one call: sent (detail: the incident's id) or not (detail: why, in one line, without the key)."""

    sent: bool
    detail: str


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}", "Content-Type": "application/json", "Accept": "application/json"}


def incidents_url(page: StatusPage, incident_id: str | None = None) -> str:
    """`{apiUrl}/v1/pages/{page_id}/incidents[/{incident_id}]`."""
    url = f"{page.api_url.rstrip('/')}/v1/pages/{quote(page.page_id, safe='')}/incidents"
    return f"{url}/{quote(incident_id, safe='')}" if incident_id else url


def _name(subject: str) -> str:
    text = " ".join(subject.split())
    return text if len(text) <= NAME_LIMIT else text[: NAME_LIMIT - 3] + "..."


def create_request(page: StatusPage, token: str, message: Message) -> PageRequest:
    """Open the incident: its name is the message's subject, its first update the message's body."""
    body = {"incident": {"name": _name(message.subject), "status": INVESTIGATING, "body": message.body}}
    return PageRequest("POST", incidents_url(page), _headers(token), body)


def update_request(
    page: StatusPage, token: str, incident_id: str, message: Message, status: str = IDENTIFIED
) -> PageRequest:
    """Move the incident on (`identified` or `monitoring`) or end it (`resolved`), the message's body its update."""
    if status not in (*UPDATE_STATUSES, RESOLVED):
        raise ValueError(f"status {status!r}; expected one of {', '.join((*UPDATE_STATUSES, RESOLVED))}")
    body = {"incident": {"status": status, "body": message.body}}
    return PageRequest("PATCH", incidents_url(page, incident_id), _headers(token), body)


def page_request(
    page: StatusPage, token: str, kind: MessageKind, message: Message, incident_id: str | None, update: str = IDENTIFIED
) -> PageRequest:
    """The call for a run's message of `kind`: the start creates, an update PATCHes with `update` (identified or
    monitoring), the resolution resolves; an update or resolution needs the incident's id."""
    if kind is MessageKind.START:
        return create_request(page, token, message)
    if not incident_id:
        raise ValueError(f"a {kind.value} needs the incident's id; the start creates it")
    return update_request(page, token, incident_id, message, RESOLVED if kind is MessageKind.RESOLUTION else update)


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "<api key>") if token else text


def send(request: PageRequest, timeout: float = TIMEOUT_SECONDS) -> PageDelivery:
    """Perform `request`; never raises. Sent: the incident's id from the answer. Not sent: the HTTP status, or why the
    API could not be reached; the API key is never part of the reason."""
    token = request.headers.get("Authorization", "").removeprefix("OAuth ").strip()
    host = urlsplit(request.url).netloc
    call = urllib.request.Request(request.url, data=request.data(), headers=request.headers, method=request.method)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            raw = answer.read(1 << 20)
    except urllib.error.HTTPError as exc:
        reason = f"the status page API answered HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        why = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
        if isinstance(why, TimeoutError):
            reason = f"the status page API at {host} did not answer within {timeout:g} s"
        else:
            reason = f"cannot reach the status page API at {host}: {one_line(why)}"
    except TimeoutError:
        reason = f"the status page API at {host} did not answer within {timeout:g} s"
    except Exception as exc:  # a status page never stops a recovery, whatever went wrong
        reason = f"{type(exc).__name__}: {one_line(exc)}"
    else:
        try:
            incident_id = json.loads(raw or b"{}").get("id")
        except (ValueError, AttributeError):
            incident_id = None
        if not isinstance(incident_id, str) or not incident_id:
            reason = f"the status page API at {host} answered without an incident id"
        else:
            return PageDelivery(True, incident_id)
    reason = _scrub(reason, token)
    log.warning("%s %s: not sent: %s", request.method, _scrub(request.url, token), reason)
    return PageDelivery(False, reason)


@dataclass
class PageOutbox:
    """A run's incident on the status page, in order: the start creates it, each update PATCHes it, the resolution
    resolves it. A message not sent stays pending and is tried again, before any newer one, at the next `post` or
    `flush` (the command's next step). `token` None: the variable `token_variable` was not set, each attempt says so."""

    page: StatusPage
    token: str | None = field(repr=False)
    timeout: float = TIMEOUT_SECONDS
    incident_id: str | None = None
    pending: list[tuple[MessageKind, Message, str]] = field(default_factory=list)

    def post(self, kind: MessageKind, message: Message, at: datetime, update: str = IDENTIFIED) -> list[Notice]:
        """Queue `message` and send what is pending in order, stopping at the first not sent."""
        self.pending.append((kind, message, update))
        return self.flush(at)

    def flush(self, at: datetime) -> list[Notice]:
        """Try the pending messages in order; the first not sent and those after it stay pending."""
        notices = []
        while self.pending:
            kind, message, update = self.pending[0]
            delivery = self._deliver(kind, message, update)
            notices.append(Notice(kind, at, delivery.sent, delivery.detail, channel=STATUS_PAGE))
            if not delivery.sent:
                break
            if kind is MessageKind.START:
                self.incident_id = delivery.detail
            self.pending.pop(0)
        return notices

    def _deliver(self, kind: MessageKind, message: Message, update: str) -> PageDelivery:
        if not self.token:
            return PageDelivery(False, f"${self.page.token_variable} is not set")
        try:
            request = page_request(self.page, self.token, kind, message, self.incident_id, update)
        except ValueError as exc:
            return PageDelivery(False, _scrub(one_line(exc), self.token))
        delivery = send(request, self.timeout)
        # An update's answer is the same incident: keep the id the create returned.
        return PageDelivery(True, self.incident_id or delivery.detail) if delivery.sent else delivery


def record_page_notices(report: Report, notices: list[Notice]) -> None:
    """Each status page attempt as a check: sent a pass, not sent a SKIP with the reason (never a failure)."""
    for notice in notices:
        name = f"status page {notice.kind.value}"
        if notice.sent:
            report.check(name, True, f"incident {notice.detail} on the status page")
        else:
            report.skip(name, f"not sent: {notice.detail} (tried again at the next step)")
