"""Where a webhook may point (`domain/webhooks.py`), at saving and at connecting."""

from __future__ import annotations

import asyncio

import pytest

from corral.config import WEBHOOK_DENY
from corral.domain import webhooks
from corral.errors import InvalidInput
from corral.gateway.alerting import Undeliverable, resolve_allowed, signature

DENY = webhooks.networks(WEBHOOK_DENY)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://127.9.9.9:8080/x", "http://[::1]:80/", "http://localhost/",
    "http://LOCALHOST./", "http://x.localhost/", "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest", "http://[fe80::1]/", "http://0.0.0.0/",
    "http://[fd00:ec2::254]/", "http://127.1/",
])
def test_loopback_link_local_and_metadata_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        webhooks.check_url(url, DENY)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:99999/", "http://example.com:0/", "ftp://example.com/", "http:///x",
    "http://exa mple.com/", "https://" + "a" * 70 + ".example/",
])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        webhooks.check_url(url, DENY)


def test_other_addresses_pass_and_an_empty_deny_list_allows_loopback() -> None:
    assert webhooks.check_url("http://192.0.2.10:8080/hook", DENY)
    assert webhooks.check_url("https://[2001:db8::1]/hook", DENY, resolve=False)
    assert webhooks.check_url("http://127.0.0.1:8080/hook", [])


def test_the_address_connected_to_is_checked_again() -> None:
    """A name that resolves to a refused address when it is connected to (DNS rebinding)."""
    with pytest.raises(Undeliverable, match="CORRAL_WEBHOOK_DENY"):
        asyncio.run(resolve_allowed("http://localhost:8080/", DENY))
    assert asyncio.run(resolve_allowed("http://localhost:8080/", [])) in ("127.0.0.1", "::1")


def test_the_signature_covers_the_time() -> None:
    body = b'{"a":1}'
    assert signature("s", "100", body) != signature("s", "101", body)
    assert signature("s", "100", body).startswith("sha256=")


def test_a_subject_is_one_line_whatever_was_stored() -> None:
    """A name stored before line breaks were refused once made the mail header code raise,
    and stopped every notification."""
    from email.message import EmailMessage

    from corral.domain.alerts import header_text

    stored = "[WARNING] down: FIRING for p\u2028two\u0085three\r\nBcc: x@evil.example"
    subject = header_text(stored)
    assert len(subject.splitlines()) == 1 and "\n" not in subject
    message = EmailMessage()
    message["Subject"] = subject  # raised ValueError with the stored text
    assert "Bcc" not in message


def test_a_webhook_is_sent_to_the_address_checked_with_its_own_host_and_credentials() -> None:
    """The request goes to the very address that was resolved and checked, naming the URL's
    host (Host header, TLS server name) and keeping its credentials."""
    import httpx

    from corral.gateway.alerting import send_webhook

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async def send() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            await send_webhook(client, "http://ops:pw@localhost:8080/hook?x=1", {"a": 1},
                               "s", 7, [])

    asyncio.run(send())
    [request] = seen
    assert request.url.host in ("127.0.0.1", "::1") and request.url.port == 8080
    assert request.url.path == "/hook" and request.url.query == b"x=1"
    assert request.headers["Host"] == "localhost:8080"
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.extensions["sni_hostname"] == "localhost"
    assert request.headers["X-Corral-Delivery"] == "7"
