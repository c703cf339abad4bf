"""An application's log on one server, read from its agent through the control plane's
`AgentLink`. The instance is resolved (and refused: unknown id, no instance there) before the
first line is asked for, so a stream starts only when it can succeed."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncGenerator

from sqlalchemy.orm import Session, sessionmaker

from corral.db.session import in_worker
from corral.domain import applications
from corral.domain.agent_link import AgentLink
from corral.domain.identity import Scope
from corral.errors import AgentUnavailable, TooManyRequests

FOLLOWS_PER_PRINCIPAL = 4
FOLLOWS_PER_PROCESS = 200


class FollowLimits:
    """Open `follow` streams, per principal and for the whole process: each holds a queue
    and a request at an agent, so nobody may open them without bound."""

    def __init__(self, per_principal: int = FOLLOWS_PER_PRINCIPAL,
                 per_process: int = FOLLOWS_PER_PROCESS) -> None:
        self.per_principal = per_principal
        self.per_process = per_process
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, who: str) -> None:
        with self._lock:
            if self._open[who] >= self.per_principal:
                raise TooManyRequests(f"at most {self.per_principal} log streams may be "
                                      "followed at once by one token; close one first",
                                      retry_after=5)
            if sum(self._open.values()) >= self.per_process:
                raise TooManyRequests("too many log streams are followed at once; retry "
                                      "shortly", retry_after=5)
            self._open[who] += 1

    def give_back(self, who: str) -> None:
        with self._lock:
            self._open[who] -= 1
            if self._open[who] <= 0:
                del self._open[who]

    @property
    def open(self) -> int:
        with self._lock:
            return sum(self._open.values())


async def _instance(readers: sessionmaker[Session], scope: Scope, app_id: int,
                    server_id: int | None) -> tuple[str, int]:
    def find(session: Session) -> tuple[str, int]:
        app = applications.get(session, scope, app_id)
        return app.name, applications.pick_instance(app, server_id)

    return await in_worker(readers, find)


async def tail(readers: sessionmaker[Session], agents: AgentLink, scope: Scope, app_id: int,
               server_id: int | None, lines: int) -> list[str]:
    """The last `lines` lines; `AgentUnavailable` when the agent is away or silent."""
    name, sid = await _instance(readers, scope, app_id, server_id)
    collected: list[str] = []
    try:
        async for batch in await agents.logs(sid, name, lines, False):
            collected.extend(batch)
    except AgentUnavailable as exc:
        raise AgentUnavailable(f"cannot read logs: {exc.message}") from exc
    return collected


async def follow(readers: sessionmaker[Session], agents: AgentLink, scope: Scope, app_id: int,
                 server_id: int | None, lines: int) -> AsyncGenerator[list[str], None]:
    """The last `lines` lines, then new ones as they come; the agent is asked at once, so an
    absent one raises `AgentUnavailable` here, before any stream begins."""
    name, sid = await _instance(readers, scope, app_id, server_id)
    try:
        return await agents.logs(sid, name, lines, True)
    except AgentUnavailable as exc:
        raise AgentUnavailable(f"cannot read logs: {exc.message}") from exc
