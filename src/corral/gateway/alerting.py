"""Alerts on the leader: every `EVALUATE_SECONDS` the evaluator compares each enabled alert's
condition with what it last saw (`domain/alerts.py`), and every second the courier sends the
notifications that are due: email through SMTP, webhooks as signed JSON POSTs. A notification is written
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
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from corral.controlplane import ControlPlane
from corral.db.models import AlertDelivery
from corral.db.session import in_worker
from corral.domain import alerts
from corral.gateway.leader import Leadership

log = logging.getLogger(__name__)
EVALUATE_SECONDS = 5.0
"""How often the fleet's state is compared with the alerts: a tenth of the default heartbeat
deadline, and at 10,000 servers a few per cent of a core (docs/performance.md)."""
SEND_EVERY_SECONDS = 1.0
SEND_TIMEOUT = 15.0
SIGNATURE_HEADER = "X-Corral-Signature"
"""`sha256=<hex HMAC-SHA256 of the body under the webhook's secret>`, as GitHub signs."""


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
    message["Subject"] = subject
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


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def send_webhook(client: httpx.AsyncClient, url: str, payload: dict[str, Any],
                       secret: str, delivery_id: int) -> None:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "corral-alerts",
               "X-Corral-Delivery": str(delivery_id)}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise Undeliverable(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= answer.status_code < 300:
        raise Undeliverable(f"the receiver answered {answer.status_code}")


class Alerting:
    def __init__(self, plane: ControlPlane, leadership: Leadership) -> None:
        self.plane = plane
        self.leadership = leadership
        self._measured_at = float("-inf")

    async def run(self) -> None:
        evaluated_at = float("-inf")
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT, follow_redirects=False) as client:
            while True:
                await asyncio.sleep(SEND_EVERY_SECONDS)
                if not self.leadership.leading:
                    continue
                try:
                    if time.monotonic() - evaluated_at >= EVALUATE_SECONDS:
                        evaluated_at = time.monotonic()
                        await self.evaluate()
                    await self.deliver(client)
                except Exception:
                    log.exception("alerting failed")

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

    async def deliver(self, client: httpx.AsyncClient) -> None:
        now = int(time.time() * 1000)
        due = await in_worker(self.plane.readers, alerts.due, now)
        settings = self.plane.settings
        for delivery in due:
            try:
                await self._send(client, delivery)
            except Undeliverable as exc:
                log.warning("alert notification %d (%s to %s) failed: %s", delivery.id,
                            delivery.kind, delivery.destination, exc)
                await in_worker(self.plane.sessions, alerts.failed, delivery.id, str(exc),
                                int(time.time() * 1000), settings.alert_attempts,
                                settings.alert_retry_seconds)
                continue
            await in_worker(self.plane.sessions, alerts.delivered, delivery.id,
                            int(time.time() * 1000))

    async def _send(self, client: httpx.AsyncClient, delivery: AlertDelivery) -> None:
        if delivery.kind == "email":
            smtp = self.plane.settings.smtp_url
            if smtp is None:
                raise Undeliverable("no mail server: set CORRAL_SMTP_URL")
            await asyncio.to_thread(send_email, smtp.get_secret_value(),
                                    self.plane.settings.smtp_from,
                                    delivery.destination.split(","),
                                    delivery.payload["subject"], delivery.payload["content"])
        else:
            await send_webhook(client, delivery.destination, delivery.payload["body"],
                               delivery.payload.get("secret", ""), delivery.id)
