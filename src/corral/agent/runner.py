"""`corral agent run`: recover, serve the local API, connect, converge — until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from corral.agent import certificates, local_api
from corral.agent.app_user import resolve as app_user_of
from corral.agent.cluster import DEFAULT_CLUSTER_PORT, ClusterManager, MulticastSettings
from corral.agent.connection import Connection
from corral.agent.layout import AgentDir, write_json_atomic
from corral.agent.measure import Meter, Pushed
from corral.agent.reconciler import Reconciler
from corral.wire import DesiredApplication

log = logging.getLogger(__name__)


PORT_PATIENCE_SECONDS = 5.0


async def _local_api_socket(layout: AgentDir, wanted: int | None
                            ) -> tuple[socket.socket, str, bool]:
    """Bind the local API; keep its port and its secret path prefix across restarts so adopted
    apps' URL stays right. The prefix is the credential: only processes given
    `CORRAL_AGENT_URL` know it, not every local user. A remembered port still held (the
    previous agent's last moments) is waited for; one another program took is given up, and
    the third value says so: the applications must be re-pointed."""
    remembered = layout.root / "agent.json"
    port = wanted
    saved: dict[str, object] = {}
    if remembered.exists():
        with contextlib.suppress(ValueError):
            saved = json.loads(remembered.read_text())
    if port is None:
        port = int(saved.get("apiPort") or 0)  # type: ignore[call-overload]
    prefix = str(saved.get("apiPrefix") or "") or secrets.token_urlsafe(24)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + PORT_PATIENCE_SECONDS
    moved = False
    while True:
        try:
            sock.bind(("127.0.0.1", port or 0))
            break
        except OSError:
            if time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                continue
            log.warning("local API port %s is taken; moving to another and restarting the "
                        "applications that were given the old one", port)
            sock.bind(("127.0.0.1", 0))
            moved = True
            break
    sock.listen(128)
    write_json_atomic(remembered, {"apiPort": sock.getsockname()[1], "apiPrefix": prefix})
    return sock, prefix, moved


async def run_agent(directory: Path, cluster_port: int | None = None,
                    api_port: int | None = None,
                    multicast: MulticastSettings | None = None,
                    app_user: str | None = None) -> None:
    layout = AgentDir(directory)
    identity = layout.load_identity()
    certificates.recover(layout)  # a renewal a crash interrupted: finished, or forgotten
    runs_as = app_user_of(app_user)
    layout.make_dirs()
    runs_as.check_reaches(layout.apps)
    port = cluster_port or DEFAULT_CLUSTER_PORT
    connection: Connection | None = None

    async def fetch(app: DesiredApplication, destination: Path) -> None:
        assert connection is not None
        await connection.fetch(app, destination)

    def changed() -> None:
        reconciler.changed.set()

    cluster = ClusterManager(layout.root / "cluster", identity.serverId, port,
                             multicast or MulticastSettings(), changed)
    sock, prefix, moved = await _local_api_socket(layout, api_port)
    api_port_bound = sock.getsockname()[1]
    agent_url = f"http://127.0.0.1:{api_port_bound}/{prefix}"
    reconciler = Reconciler(layout, fetch, identity.serverId, cluster, agent_url, runs_as)
    pushed = Pushed()
    connection = Connection(identity, layout, reconciler, port, Meter(layout.root), pushed)
    api = _LocalApiServer(uvicorn.Config(
        local_api.build(cluster, prefix, api_port_bound, pushed, lambda: list(reconciler.runners)),
        log_level="warning", lifespan="off"))
    await reconciler.recover(f"the local API moved to port {api_port_bound}" if moved else None)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(connection.run_forever()),
             asyncio.create_task(cluster.watch()),
             asyncio.create_task(api.serve(sockets=[sock]))]
    log.info("agent for server %s (%s) running in %s; applications run as %s; local API on "
             "port %s", identity.serverId, identity.name, directory, runs_as.name, api_port_bound)
    await stop.wait()
    log.info("stopping; applications keep running")
    api.should_exit = True
    for task in tasks[:2]:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
    await reconciler.shutdown()


class _LocalApiServer(uvicorn.Server):
    """The agent takes SIGTERM and SIGINT itself (it stops and leaves the applications
    running); the local API's server must not take them over."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
