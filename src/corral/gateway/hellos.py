"""Hellos in: agents that connect together (after a restart, thousands within seconds) are
admitted and sent their state from one transaction per burst instead of one each."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import agents
from corral.errors import CorralError
from corral.gateway.bursts import GATHER_SECONDS
from corral.pki.authority import ServerIdentity

log = logging.getLogger(__name__)
BATCH = 1000

Waiting = tuple[ServerIdentity, wire.Hello, "asyncio.Future[tuple[int, str]]"]


class Stopping(Exception):
    """The gateway stops: a hello it has not admitted yet will not be. Without this, the
    connection's handler waited for an answer that never came, and the gateway's close waits
    for every handler: a hello that arrived as a replica stopped held its shutdown forever."""


class HelloBatcher:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._waiting: list[Waiting] = []
        self._wanted = asyncio.Event()
        self._stopped = False
        self._storing: asyncio.Task[list[tuple[int, str] | CorralError]] | None = None

    async def admit(self, who: ServerIdentity, hello: wire.Hello) -> tuple[int, str]:
        """The server's desired-state message (revision, wire text); raises the CorralError
        that refuses it, or `Stopping`."""
        if self._stopped:
            raise Stopping
        answer: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._waiting.append((who, hello, answer))
        self._wanted.set()
        return await answer

    async def run(self) -> None:
        batch: list[Waiting] = []
        try:
            while True:
                await self._wanted.wait()
                await asyncio.sleep(GATHER_SECONDS)  # let a burst gather
                batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
                if not self._waiting:
                    self._wanted.clear()
                # shielded: a cancelled batcher leaves its transaction to end (`settled`);
                # ruff misses that the attribute holds the task
                self._storing = asyncio.create_task(in_worker(  # noqa: RUF006
                    self.plane.sessions, agents.connected,
                    [(who, hello) for who, hello, _ in batch], self.plane.told(),
                    self.plane.replica_id))
                try:
                    results = await asyncio.shield(self._storing)
                except Exception as exc:
                    log.exception("admitting %d agents failed", len(batch))
                    results = [exc] * len(batch)  # type: ignore[list-item]
                for (_who, _hello, answer), result in zip(batch, results, strict=True):
                    if answer.done():
                        continue  # its connection went away meanwhile
                    if isinstance(result, BaseException):
                        answer.set_exception(result)
                    else:
                        answer.set_result(result)
                # answered: its messages (up to a thousand) are not kept until the next
                batch, self._storing = [], None
        finally:
            self._stopped = True
            for _who, _hello, answer in [*batch, *self._waiting]:
                if not answer.done():
                    answer.set_exception(Stopping())
            self._waiting = []

    async def settled(self) -> None:
        """Once the batcher is stopped: wait for the transaction it was in, if any (a batch
        answered is forgotten). Cancelling the batcher does not stop its worker thread, whose
        commit marks its agents connected to this replica; the gateway's last transaction,
        which lets go of them, must come after."""
        if self._storing is not None:
            with contextlib.suppress(Exception):
                await self._storing
