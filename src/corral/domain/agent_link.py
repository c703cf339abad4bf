"""The control plane's port to its agents. The gateway implements it; api and console reach
agents only through `ControlPlane.agents`, and get `AgentUnavailable` when one is away."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from corral.errors import AgentUnavailable


class AgentLink(Protocol):
    async def logs(self, server_id: int, application: str, lines: int,
                   follow: bool) -> AsyncGenerator[list[str], None]:
        """Batches of an application's log lines from the agent of `server_id`, wherever it
        is connected (this replica or another); raises `AgentUnavailable` before any line
        when no replica holds that agent."""
        ...


class NoAgents:
    """A control plane without a gateway (admin commands, in-process tests)."""

    async def logs(self, server_id: int, application: str, lines: int,
                   follow: bool) -> AsyncGenerator[list[str], None]:
        raise AgentUnavailable("no agent gateway runs in this process")
