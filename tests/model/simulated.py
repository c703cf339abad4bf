"""Light agents for the status-word checks: each a real mutual-TLS websocket to the real
gateway, speaking the real protocol, with applications that take time to fetch, stop and start
and that can fail their health check. Each keeps the truth of what it runs, moment by moment,
so that every status the API showed can be held against it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from corral import wire
from corral.pki.keys import new_key_request

FETCH_S = 2.5
"""Fetching and unpacking a new deployment (the old one keeps running meanwhile): longer than
the checks' allowance for a report to arrive, so that a redeploy's fetch is held to them."""
STOP_S = 0.2
START_S = 0.4
"""From the processes' start to their health check passing (or failing)."""


@dataclass
class Truth:
    """What really runs of one application on one server, from `since` (monotonic, when the
    report that says so began to be sent: the control plane cannot know it before)."""

    since: float | None
    deployment: int
    """The deployment the agent is busy with (the one it reports about)."""
    status: str
    serving: int | None
    """The deployment whose processes run and passed their check; None: nothing serves."""


@dataclass
class Running:
    deployment: int
    sha256: str
    status: str
    serving: int | None
    task: asyncio.Task[None] | None = None


@dataclass
class SimAgent:
    server_id: int
    pem: Path
    gateway: str
    ca: str
    failing: set[str]
    """sha256 of artifacts whose health check never passes."""
    timeline: dict[str, list[Truth]] = field(default_factory=dict)
    connected: list[tuple[float, bool]] = field(default_factory=list)
    apps: dict[str, Running] = field(default_factory=dict)
    revision: int = 0
    ws: ClientConnection | None = None
    online: bool = True
    runner: asyncio.Task[None] | None = None
    desired: wire.Desired | None = None

    def truth(self, name: str, running: Running) -> None:
        self.timeline.setdefault(name, []).append(
            Truth(None, running.deployment, running.status, running.serving))

    async def send_report(self) -> None:
        if self.ws is None:
            return
        report = wire.Report(revision=self.revision, applications=[
            wire.ApplicationReport(name=n, deploymentId=r.deployment, status=r.status,  # type: ignore[arg-type]
                                   serving=r.serving is not None)
            for n, r in sorted(self.apps.items())])
        with contextlib.suppress(ConnectionClosed):
            # the moment the report leaves: once `send` returns, a loaded event loop may resume
            # this coroutine after the control plane has read it (and answered a sample)
            sent = time.monotonic()
            await self.ws.send(wire.encode(report))
            for timeline in self.timeline.values():
                for truth in reversed(timeline):
                    if truth.since is not None:
                        break
                    truth.since = sent

    async def set(self, name: str, running: Running, status: str,
                  serving: int | None) -> None:
        running.status, running.serving = status, serving
        self.truth(name, running)
        await self.send_report()

    async def run(self) -> None:
        """Connect, converge, reconnect while online (applications keep running while away)."""
        while True:
            if not self.online:
                await asyncio.sleep(0.05)
                continue
            ctx = ssl.create_default_context(cadata=self.ca)
            ctx.check_hostname = False
            ctx.load_cert_chain(str(self.pem))
            try:
                async with connect(self.gateway, ssl=ctx, open_timeout=30,
                                   compression=None) as ws:
                    await ws.send(wire.encode(wire.Hello(agentVersion="model",
                                                         hostname=f"sim-{self.server_id}")))
                    self.ws = ws
                    self.connected.append((time.monotonic(), True))
                    async for raw in ws:
                        message = wire.decode(raw)
                        if isinstance(message, wire.Desired):
                            self.revision = message.revision
                            self.desired = message
                            self.converge(message)
                            await self.send_report()
                        if not self.online:
                            await ws.close()
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                pass
            finally:
                if self.ws is not None:
                    self.connected.append((time.monotonic(), False))
                self.ws = None
            await asyncio.sleep(0.2)

    def settled(self, running: Running) -> None:
        """A change finished: converge again, as the real reconciler does (what was asked
        meanwhile, a start during a stop, is done now)."""
        running.task = None
        if self.desired is not None:
            self.converge(self.desired)

    def converge(self, desired: wire.Desired) -> None:
        wanted = {a.name: a for a in desired.applications}
        for name in list(self.apps):
            if name not in wanted:
                running = self.apps.pop(name)
                if running.task is not None:
                    running.task.cancel()
                running.status, running.serving = "UNDEPLOYED", None
                self.truth(name, running)
        for name, app in wanted.items():
            running = self.apps.get(name)
            if running is None:
                running = self.apps[name] = Running(app.deploymentId, app.artifact.sha256,
                                                    "DEPLOYING", None)
                self.truth(name, running)
                running.task = asyncio.create_task(self.deploy(name, running, app))
            elif running.deployment != app.deploymentId:
                if running.task is not None:
                    running.task.cancel()
                running.deployment, running.sha256 = app.deploymentId, app.artifact.sha256
                running.status = "DEPLOYING"  # the old one serves on while this is fetched
                self.truth(name, running)
                running.task = asyncio.create_task(self.deploy(name, running, app))
            elif running.task is None or running.task.done():
                if app.desiredStatus == "STOPPED" and running.status != "STOPPED":
                    running.task = asyncio.create_task(self.stop(name, running))
                elif app.desiredStatus == "STARTED" and running.status == "STOPPED":
                    running.task = asyncio.create_task(self.start(name, running, app))

    async def deploy(self, name: str, running: Running, app: wire.DesiredApplication) -> None:
        await asyncio.sleep(FETCH_S)
        if running.serving is not None:
            await self.set(name, running, "DEPLOYING", running.serving)
            await asyncio.sleep(STOP_S)
            await self.set(name, running, "DEPLOYING", None)  # the old one stopped
        if app.desiredStatus == "STOPPED":
            await self.set(name, running, "STOPPED", None)
            self.settled(running)
            return
        await self.start(name, running, app)

    async def start(self, name: str, running: Running, app: wire.DesiredApplication) -> None:
        await self.set(name, running, "STARTING", None)
        await asyncio.sleep(START_S)
        if app.artifact.sha256 in self.failing:
            await self.set(name, running, "DEPLOYMENT_FAILED", None)
        else:
            await self.set(name, running, "STARTED", running.deployment)
        self.settled(running)

    async def stop(self, name: str, running: Running) -> None:
        await self.set(name, running, "STOPPING", running.serving)
        await asyncio.sleep(STOP_S)
        await self.set(name, running, "STOPPED", None)
        self.settled(running)


class Fleet:
    """Simulated agents on an event loop of their own, driven from the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.agents: dict[int, SimAgent] = {}

    def do(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def add(self, agent: SimAgent) -> None:
        self.agents[agent.server_id] = agent

        async def begin() -> None:
            agent.runner = asyncio.create_task(agent.run())

        self.do(begin())

    def send(self, server_id: int, message: wire.Message) -> None:
        """A message of the agent's own (a renewal, say) on its connection."""
        agent = self.agents[server_id]

        async def out() -> None:
            assert agent.ws is not None, "not connected"
            await agent.ws.send(wire.encode(message))

        self.do(out())

    def set_online(self, server_id: int, online: bool) -> None:
        agent = self.agents[server_id]

        async def change() -> None:
            agent.online = online
            if not online and agent.ws is not None:
                await agent.ws.close()

        self.do(change())

    def close(self) -> None:
        async def end() -> None:
            tasks = [t for agent in self.agents.values()
                     for t in [agent.runner, *(r.task for r in agent.apps.values())]
                     if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.do(end())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def identity(folder: Path, name: str) -> tuple[Path, str]:
    """A key file to be completed with the certificate, and the CSR to register with."""
    request = new_key_request(name)
    path = folder / f"{name}.pem"
    path.write_bytes(request.key_pem)
    return path, request.csr_pem
