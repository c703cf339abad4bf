"""Changes committed by other replicas, heard at once through PostgreSQL `LISTEN` (ADR 0008).
Each notice names the servers whose desired state moved (or "all"), the servers deleted, and
whether credentials changed; this replica pushes to the agents it holds and forgets cached
tokens, and kept answers stop being served (`corral.db.changes`). While the connection is down
nothing is heard: kept answers are not served, and every (re)connection starts with a full
comparison of revisions; the sweeper's comparison every few seconds stays the safety net."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg

from corral.controlplane import NOTICE_CHANNEL, ControlPlane, Notice
from corral.db.session import dedicated_connection
from corral.gateway.held import start_held

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0


class Notices:
    def __init__(self, plane: ControlPlane, *, on_change: Callable[[set[int], set[int]], None],
                 resync: Callable[[], Awaitable[None]]) -> None:
        self.plane = plane
        self.on_change = on_change
        self.resync = resync
        self.listening = asyncio.Event()
        self._resyncs: set[asyncio.Future[None]] = set()  # `start_held`

    async def run(self) -> None:
        if self.plane.engine.dialect.name != "postgresql":
            return  # one process on SQLite: its own after-commit hook is all there is
        while True:
            try:
                async with await dedicated_connection(self.plane.engine) as conn:
                    await conn.execute(f"LISTEN {NOTICE_CHANNEL}")
                    self.listening.set()
                    # answers kept before now may hide what was missed; from now on every
                    # change is heard
                    self.plane.changes.move()
                    self.plane.changes.heard = True
                    log.info("listening for changes made by other replicas")
                    await self.resync()  # whatever was missed while not listening
                    async for message in conn.notifies():
                        self._heard(message.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("not listening for other replicas' changes (%s); retrying", exc)
            except Exception:
                log.exception("the change listener failed; retrying")
            self.plane.changes.heard = False
            self.listening.clear()
            await asyncio.sleep(RETRY_SECONDS)

    def _heard(self, payload: str) -> None:
        try:
            notice = Notice.decode(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed change notice")
            return
        if notice.replica == self.plane.replica_id:
            return  # this replica's own after-commit hook handled it
        if notice.answers:
            self.plane.changes.move()
        if notice.credentials:
            self.plane.principals.clear()
        if notice.changed is None:
            start_held(self._resyncs, self.resync())
        else:
            self.on_change(notice.changed - notice.revoked, notice.revoked)
