"""Rollouts advance on the leader: every half second, each running rollout looks at its
servers' reports and releases the next batch, stops, or reverts (`domain/rollouts.py`). The
state is all in the database, so a leader that dies hands its rollouts on unharmed."""

from __future__ import annotations

from corral.controlplane import ControlPlane
from corral.db.session import in_worker
from corral.domain import rollouts
from corral.gateway.leader import Leadership, while_leading

PERIOD_SECONDS = 0.5


class RolloutDriver:
    def __init__(self, plane: ControlPlane, leadership: Leadership) -> None:
        self.plane = plane
        self.leadership = leadership

    async def run(self) -> None:
        await while_leading(self.leadership, PERIOD_SECONDS, self.advance, "advancing rollouts")

    async def advance(self) -> None:
        # a read first: no write transaction (SQLite's one writer) when none runs
        if await in_worker(self.plane.readers, rollouts.any_running):
            await in_worker(self.plane.sessions, rollouts.advance_all)
