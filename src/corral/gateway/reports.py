"""Reports in: those arriving together are stored together, in one transaction."""

from __future__ import annotations

import asyncio
import logging

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import agents

log = logging.getLogger(__name__)
GATHER_SECONDS = 0.02


class ReportBatcher:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._reports: list[tuple[int, wire.Report]] = []
        self._waiting = asyncio.Event()

    def queue(self, server_id: int, report: wire.Report) -> None:
        self._reports.append((server_id, report))
        self._waiting.set()

    async def run(self) -> None:
        while True:
            await self._waiting.wait()
            await asyncio.sleep(GATHER_SECONDS)  # let a burst gather
            self._waiting.clear()
            batch, self._reports = self._reports, []
            try:
                await in_worker(self.plane.sessions, agents.record_reports, batch)
            except Exception:
                log.exception("storing %d reports failed", len(batch))
