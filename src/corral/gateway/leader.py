"""Singleton work (marking silent servers DISCONNECTED, forgetting expired tokens and gone
replicas) runs on one replica: the holder of a PostgreSQL advisory lock, taken on a connection
of its own. When that replica dies its connection closes, PostgreSQL releases the lock, and
another replica takes it at its next try (every `TRY_SECONDS`). On SQLite there is one process,
and it leads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg

from corral.controlplane import ControlPlane
from corral.db.session import dedicated_connection
from corral.gateway.periodic import every

log = logging.getLogger(__name__)
LOCK_KEY = 0x636F7272616C02
TRY_SECONDS = 2.0


class Leadership:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.shared = plane.engine.dialect.name == "postgresql"
        self.leading = not self.shared

    async def run(self) -> None:
        if not self.shared:
            return
        while True:
            try:
                async with await dedicated_connection(self.plane.engine) as conn:
                    while True:
                        if self.leading:
                            await conn.execute("SELECT 1")  # still holding it
                        else:
                            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)",
                                                        (LOCK_KEY,))
                            row = await cursor.fetchone()
                            if row and row[0]:
                                self.leading = True
                                log.info("this replica (%s) now does the singleton work",
                                         self.plane.replica_id)
                        await asyncio.sleep(TRY_SECONDS)
            except (psycopg.Error, OSError) as exc:
                if self.leading:
                    log.warning("lost the leader's lock (%s)", exc)
            except Exception:
                log.exception("leadership failed")
            self.leading = False
            await asyncio.sleep(TRY_SECONDS)


async def while_leading(leadership: Leadership, seconds: float,
                        work: Callable[[], Awaitable[object]], what: str) -> None:
    """`work` every `seconds` while this replica leads: the loop of every singleton job."""
    await every(seconds, work, what, only_while=lambda: leadership.leading)
