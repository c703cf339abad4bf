"""Where alert notifications arrive: a real SMTP server and a webhook receiver."""

from __future__ import annotations

import http.server
import threading
from typing import Any

from tests.e2e.processes import free_port


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a local port, keeping every message it receives.
    It can be stopped and started again on the same port (a mail server that was away)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[dict[str, Any]] = []
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        parsed = email.message_from_bytes(envelope.content)
        self.messages.append({"from": envelope.mail_from, "to": sorted(envelope.rcpt_tos),
                              "subject": parsed["Subject"], "body": parsed.get_payload()})
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def with_subject(self, words: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if words in (m["subject"] or "")]


class WebhookSink:
    """A real HTTP receiver: it keeps each POST's headers and body; a path ending in /fail
    answers 500."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received.append((self.path, dict(self.headers), body))
                self.send_response(500 if self.path.endswith("/fail") else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
