"""One connected agent: its messages in, and the log requests it answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from corral import wire
from corral.errors import AgentUnavailable
from corral.pki.authority import ServerIdentity

log = logging.getLogger(__name__)
LOG_ANSWER_SECONDS = 15.0
LOG_QUEUE_BATCHES = 64
"""Batches of log lines kept for a reader that has not taken them yet (an agent sends at most
a few hundred kilobytes a batch); past them the reader has fallen behind and its stream ends."""
FELL_BEHIND = "the reader fell behind the log; the stream ended (ask again to go on)"


class AgentConnection:
    """Desired state goes out through the gateway's pusher; this object remembers the revision
    last sent so that the pusher sends only what moved."""

    @property
    def leaving_to_renew(self) -> bool:
        """The agent closed this connection to come back at once with its new certificate."""
        return self.ws.close_code == 1000 and self.ws.close_reason == wire.RENEWED_REASON

    def __init__(self, ws: ServerConnection, who: ServerIdentity, *,
                 on_report: Callable[[int, wire.Report], None],
                 on_measurements: Callable[[int, wire.Measurements], None] = lambda *_: None,
                 on_renew: Callable[[AgentConnection, wire.RenewCertificate],
                                    Coroutine[Any, Any, None]] | None = None,
                 ) -> None:
        self.ws = ws
        self.who = who
        self.sent_revision = -1
        self.sent_trust: list[str] | None = None
        """the CAs the last desired state sent named (None: not known)"""
        self._on_report = on_report
        self._on_measurements = on_measurements
        self._on_renew = on_renew
        self._renewal: asyncio.Task[None] | None = None
        self.renewed_at = float("-inf")
        """when a renewal was last asked for on this connection (monotonic)"""
        self._log_requests: dict[str, asyncio.Queue[wire.LogLines]] = {}

    @property
    def server_id(self) -> int:
        return self.who.server_id

    async def logs(self, application: str, lines: int,
                   follow: bool) -> AsyncGenerator[list[str], None]:
        """Ask the agent for an application's log; yields batches of lines."""
        request = wire.LogsRequest(requestId=uuid.uuid4().hex, application=application,
                                   lines=lines, follow=follow)
        queue: asyncio.Queue[wire.LogLines] = asyncio.Queue(LOG_QUEUE_BATCHES)
        self._log_requests[request.requestId] = queue
        try:
            try:
                await self.ws.send(wire.encode(request))
            except ConnectionClosed as exc:
                raise AgentUnavailable(f"server {self.server_id} disconnected") from exc
            while True:
                get = asyncio.ensure_future(queue.get())
                closed = asyncio.ensure_future(self.ws.wait_closed())
                done, _ = await asyncio.wait({get, closed},
                                             timeout=None if follow else LOG_ANSWER_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if get not in done:
                    get.cancel()
                    raise AgentUnavailable("the server's agent did not answer")
                answer = get.result()
                if answer.error:
                    raise AgentUnavailable(answer.error)
                yield answer.lines
                if answer.done:
                    return
        finally:
            self._log_requests.pop(request.requestId, None)
            if follow:
                with contextlib.suppress(ConnectionClosed):
                    await self.ws.send(wire.encode(wire.LogsCancel(requestId=request.requestId)))

    async def receive_loop(self) -> None:
        async for raw in self.ws:
            try:
                message = wire.decode(raw)
            except ValueError as exc:
                log.warning("server %s sent a message we cannot read: %s", self.server_id, exc)
                await self.ws.close(*wire.close_code_for(exc))
                return
            if isinstance(message, wire.Report):
                self._on_report(self.server_id, message)
            elif isinstance(message, wire.Measurements):
                self._on_measurements(self.server_id, message)
            elif isinstance(message, wire.RenewCertificate):
                if self._on_renew is not None and (self._renewal is None
                                                   or self._renewal.done()):
                    self._renewal = asyncio.create_task(self._on_renew(self, message))
            elif isinstance(message, wire.LogLines):
                queue = self._log_requests.get(message.requestId)
                if queue is not None:
                    _offer(queue, message)


def _offer(queue: asyncio.Queue[wire.LogLines], message: wire.LogLines) -> None:
    """A batch for a reader; one whose queue is full has fallen behind: what it has not read is
    dropped and it is told its stream ended, so a reader that never reads holds a bounded
    amount of memory."""
    try:
        queue.put_nowait(message)
    except asyncio.QueueFull:
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(wire.LogLines(requestId=message.requestId, error=FELL_BEHIND,
                                       done=True))
