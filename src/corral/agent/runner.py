"""`corral agent run`: recover, connect, converge — until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from corral.agent.connection import Connection
from corral.agent.layout import AgentDir
from corral.agent.reconciler import Reconciler

log = logging.getLogger(__name__)


async def run_agent(directory: Path, cluster_port: int | None = None) -> None:
    layout = AgentDir(directory)
    identity = layout.load_identity()
    layout.make_dirs()
    connection: Connection | None = None

    async def fetch(app, destination):  # type: ignore[no-untyped-def]
        assert connection is not None
        await connection.fetch(app, destination)

    reconciler = Reconciler(layout, fetch, identity.serverId)
    connection = Connection(identity, layout, reconciler, cluster_port)
    await reconciler.recover()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    link = asyncio.create_task(connection.run_forever())
    log.info("agent for server %s (%s) running in %s", identity.serverId, identity.name, directory)
    await stop.wait()
    log.info("stopping; applications keep running")
    link.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await link
    await reconciler.shutdown()
