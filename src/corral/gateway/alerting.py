"""Alerts on the leader: every `EVALUATE_SECONDS` the evaluator compares each enabled alert's
condition with what it last saw (`domain/alerts.py`), and, in a loop of its own, every second
the courier sends the notifications that are due, each in a task of its own within budgets per
environment and per receiver: email through SMTP, webhooks as signed JSON POSTs to an address
checked against `CORRAL_WEBHOOK_DENY` as it is connected to. A notification is written
with its firing, before any sending; it is marked DELIVERED as soon as it is sent, so a leader
that dies loses none and the next one sends only what was not sent (at most the one it was
sending as it died goes twice). Sending runs off the event loop and never holds a database
transaction, so neither the API nor the agents wait on a mail server."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import smtplib
import socket
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from corral.controlplane import ControlPlane
from corral.db.models import AlertDelivery
from corral.db.session import in_worker
from corral.domain import alerts, webhooks
from corral.gateway.held import start_held
from corral.gateway.leader import Leadership, while_leading

log = logging.getLogger(__name__)
EVALUATE_SECONDS = 5.0
"""How often the fleet's state is compared with the alerts: a tenth of the default heartbeat
deadline, and at 10,000 servers a few per cent of a core (docs/performance.md)."""
SEND_EVERY_SECONDS = 1.0
SEND_TIMEOUT = 15.0
SIGNATURE_HEADER = "X-Corral-Signature"
"""`sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the webhook's secret>`."""
TIMESTAMP_HEADER = "X-Corral-Timestamp"
"""Seconds since the epoch when the notification was sent, covered by the signature."""
MAX_SENDING = 32
PER_ENVIRONMENT = 4
PER_DESTINATION = 2


class Undeliverable(Exception):
    """This attempt failed; the courier tries again later."""


def send_email(smtp_url: str, sender: str, recipients: list[str], subject: str,
               content: str) -> None:
    """`smtp://[user:password@]host:port` (STARTTLS when the server offers it) or
    `smtps://...` (TLS from the start)."""
    url = urlsplit(smtp_url)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise Undeliverable("CORRAL_SMTP_URL is not smtp://host:port or smtps://host:port")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = alerts.header_text(subject)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="corral")
    message.set_content(content)
    context = ssl.create_default_context()
    client: smtplib.SMTP
    try:
        if url.scheme == "smtps":
            client = smtplib.SMTP_SSL(url.hostname, url.port or 465, timeout=SEND_TIMEOUT,
                                      context=context)
        else:
            client = smtplib.SMTP(url.hostname, url.port or 25, timeout=SEND_TIMEOUT)
        with client:
            client.ehlo()
            if url.scheme == "smtp" and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            client.send_message(message, to_addrs=recipients)
    except (smtplib.SMTPException, OSError) as exc:
        raise Undeliverable(f"{type(exc).__name__}: {exc}") from exc


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 of `timestamp.body` under the webhook's secret: a receiver checks it and
    refuses a timestamp too far from its clock, so a captured request cannot be replayed."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()


async def resolve_allowed(url: str, deny: Sequence[webhooks.Network]) -> str:
    """The address to connect to: the host's, checked against `deny` now, at connect time
    (a name that resolved elsewhere when the alert was saved is refused here)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                              type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Undeliverable(f"{host} does not resolve: {exc}") from exc
    addresses = [info[4][0] for info in found]
    allowed = [a for a in addresses if not webhooks.denied(str(a), deny)]
    if not allowed or len(allowed) < len(addresses):
        raise Undeliverable(f"{host} resolves to an address refused by CORRAL_WEBHOOK_DENY")
    return str(allowed[0])


async def send_webhook(client: httpx.AsyncClient, url: str, payload: dict[str, Any],
                       secret: str, delivery_id: int,
                       deny: Sequence[webhooks.Network] = ()) -> None:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    parts = urlsplit(url)
    address = await resolve_allowed(url, deny)
    # connect to the address just checked, naming the host as the URL does (Host, TLS)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    netloc = f"[{address}]" if ":" in address else address
    if parts.port:
        netloc += f":{parts.port}"
    if userinfo:
        netloc = f"{userinfo}@{netloc}"  # credentials in the URL still go as Basic auth
    headers = {"Content-Type": "application/json", "User-Agent": "corral-alerts",
               "Host": hostport, "X-Corral-Delivery": str(delivery_id),
               TIMESTAMP_HEADER: timestamp}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    try:
        answer = await client.post(parts._replace(netloc=netloc).geturl(), content=body,
                                   headers=headers,
                                   extensions={"sni_hostname": parts.hostname or ""})
    except httpx.HTTPError as exc:
        raise Undeliverable(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= answer.status_code < 300:
        raise Undeliverable(f"the receiver answered {answer.status_code}")


class Alerting:
    """Two loops on the leader: the evaluator, and the courier. The courier sends each due
    notification in a task of its own, at most `PER_ENVIRONMENT` at once for one environment
    and `PER_DESTINATION` for one receiver, so a receiver that never answers holds back only
    its own; any error of one attempt is that attempt's failure."""

    def __init__(self, plane: ControlPlane, leadership: Leadership) -> None:
        self.plane = plane
        self.leadership = leadership
        self._measured_at = float("-inf")
        self._sending: dict[int, tuple[str, str]] = {}
        """Notifications in flight: id → (environment, destination)."""
        self._tasks: set[asyncio.Future[None]] = set()
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        try:
            await asyncio.gather(
                while_leading(self.leadership, EVALUATE_SECONDS, self.evaluate,
                              "evaluating alerts"),
                while_leading(self.leadership, SEND_EVERY_SECONDS, self.deliver,
                              "sending alert notifications"))
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._client is not None:
                await self._client.aclose()

    def _http(self) -> httpx.AsyncClient:
        """The webhooks' client, made when the first one is sent: making it reads the
        certificate store (some 50 ms of CPU), which a replica that sends none does not need."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=SEND_TIMEOUT, follow_redirects=False)
        return self._client

    async def evaluate(self) -> int:
        """The fleet's state every time; thresholds every half measurement interval (their
        readings arrive no faster)."""
        if not await in_worker(self.plane.readers, alerts.any_enabled):
            return 0
        interval = self.plane.settings.metrics_seconds
        now = time.monotonic()
        measured = now - self._measured_at >= max(EVALUATE_SECONDS, interval / 2)
        if measured:
            self._measured_at = now
        fired = await in_worker(self.plane.sessions, functools.partial(
            alerts.evaluate, interval=interval, measured=measured))
        if fired:
            log.info("%d alert firing(s) recorded", len(fired))
        return len(fired)

    async def deliver(self, *, wait: bool = False) -> None:
        """Start sending what is due, within the budgets; `wait`: until those sends end."""
        per_env = Counter(env for env, _ in self._sending.values())
        busy = [env for env, n in per_env.items() if n >= PER_ENVIRONMENT]
        room = MAX_SENDING - len(self._sending)
        if room <= 0:
            return
        due = await in_worker(self.plane.readers, functools.partial(
            alerts.due, now_ms=int(time.time() * 1000), limit=4 * MAX_SENDING,
            sending=list(self._sending), busy=busy))
        per_destination = Counter(dest for _, dest in self._sending.values())
        started: list[asyncio.Future[None]] = []
        for delivery, env in due:
            destination = _destination(delivery)
            if room <= 0:
                break
            if per_env[env] >= PER_ENVIRONMENT or \
                    per_destination[destination] >= PER_DESTINATION:
                continue
            per_env[env] += 1
            per_destination[destination] += 1
            room -= 1
            self._sending[delivery.id] = (env, destination)
            started.append(start_held(self._tasks, self._deliver_one(delivery)))
        if wait and started:
            await asyncio.gather(*started, return_exceptions=True)

    async def _deliver_one(self, delivery: AlertDelivery) -> None:
        settings = self.plane.settings
        try:
            if not await in_worker(self.plane.readers, alerts.still_due, delivery.id):
                return  # its alert was deleted, or it went out meanwhile
            try:
                await self._send(delivery)
            except Exception as exc:  # any failure is this attempt's alone
                why = str(exc) if isinstance(exc, Undeliverable) else \
                    f"{type(exc).__name__}: {exc}"
                log.warning("alert notification %d (%s to %s) failed: %s", delivery.id,
                            delivery.kind, delivery.destination, why)
                await in_worker(self.plane.sessions, alerts.failed, delivery.id, why,
                                int(time.time() * 1000), settings.alert_attempts,
                                settings.alert_retry_seconds)
                return
            await in_worker(self.plane.sessions, alerts.delivered, delivery.id,
                            int(time.time() * 1000))
        except Exception:
            log.exception("alert notification %d: its bookkeeping failed", delivery.id)
        finally:
            self._sending.pop(delivery.id, None)

    async def _send(self, delivery: AlertDelivery) -> None:
        if delivery.kind == "email":
            smtp = self.plane.settings.smtp_url
            if smtp is None:
                raise Undeliverable("no mail server: set CORRAL_SMTP_URL")
            await asyncio.to_thread(send_email, smtp.get_secret_value(),
                                    self.plane.settings.smtp_from,
                                    delivery.destination.split(","),
                                    delivery.payload["subject"], delivery.payload["content"])
        else:
            await send_webhook(self._http(), delivery.destination, delivery.payload["body"],
                               delivery.payload.get("secret", ""), delivery.id,
                               self.plane.webhook_deny)


def _destination(delivery: AlertDelivery) -> str:
    """What one budget counts: a webhook's host and port, or the mail server."""
    if delivery.kind == "email":
        return "smtp"
    try:
        return urlsplit(delivery.destination).netloc.rsplit("@", 1)[-1].lower()
    except ValueError:
        return delivery.destination
