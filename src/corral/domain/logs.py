"""An application's log on one server, read from its agent through the control plane's
`AgentLink`. The instance is resolved (and refused: unknown id, no instance there) before the
first line is asked for, so a stream starts only when it can succeed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy.orm import Session, sessionmaker

from corral.db.session import in_worker
from corral.domain import applications
from corral.domain.accounts import Scope
from corral.domain.agent_link import AgentLink
from corral.errors import AgentUnavailable


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
                 server_id: int | None, lines: int) -> AsyncIterator[list[str]]:
    """The last `lines` lines, then new ones as they come; the agent is asked at once, so an
    absent one raises `AgentUnavailable` here, before any stream begins."""
    name, sid = await _instance(readers, scope, app_id, server_id)
    try:
        return await agents.logs(sid, name, lines, True)
    except AgentUnavailable as exc:
        raise AgentUnavailable(f"cannot read logs: {exc.message}") from exc
