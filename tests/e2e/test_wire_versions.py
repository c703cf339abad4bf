"""Both sides refuse a protocol version they do not speak, say why in the close frame, and
lose nothing: the control plane keeps the server's records, the agent keeps its applications."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from corral import wire
from corral.agent.layout import AgentDir
from corral.pki.authority import CertificateAuthority
from tests.e2e.operator import Operator
from tests.e2e.processes import AgentProcess, ServeProcess, register_agent
from tests.support import eventually


def _agent_tls(directory: Path) -> ssl.SSLContext:
    layout = AgentDir(directory)
    ctx = ssl.create_default_context(cafile=str(layout.ca))
    ctx.load_cert_chain(layout.certificate, layout.key)
    return ctx


def test_gateway_refuses_another_version(control_plane: ServeProcess, operator: Operator,
                                         tmp_path: Path) -> None:
    directory = tmp_path / "agent"
    r = register_agent(control_plane, operator.registration_token(), "future", directory)
    assert r.returncode == 0, r.stderr
    server_id = json.loads((directory / "identity.json").read_text())["serverId"]
    hello = json.loads(wire.encode(wire.Hello(agentVersion="9.0", hostname="future")))

    async def speak(version: int) -> tuple[int, str]:
        url = f"wss://127.0.0.1:{control_plane.gateway_port}{wire.CONNECT_PATH}"
        async with connect(url, ssl=_agent_tls(directory)) as ws:
            await ws.send(json.dumps({**hello, "v": version}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code, closed.value.rcvd.reason

    code, reason = asyncio.run(speak(wire.VERSION + 1))
    assert code == wire.CLOSE_UNSUPPORTED_VERSION
    assert f"version {wire.VERSION + 1}" in reason and f"speaks version {wire.VERSION}" in reason
    assert operator.data(f"/servers/{server_id}")["status"] == "CREATED"  # never admitted


def test_agent_refuses_another_version_and_keeps_running(
        control_plane: ServeProcess, operator: Operator,
        agents: Callable[..., AgentProcess]) -> None:
    """A control plane that speaks a newer protocol: the agent closes with 4426, keeps its
    application running, and says so in its log."""
    from tests.e2e.apps import app_port, app_zip, ask

    agent = agents("old-agent")
    app = operator.deploy("keep", agent.server_id, app_zip())
    operator.wait_app(app["id"], "STARTED")
    port = app_port(agent, "keep")
    agent.stop()

    closes: list[tuple[int, str]] = []
    ca = CertificateAuthority.load_or_create(control_plane.data_dir / "pki")
    tls_dir = agent.directory.parent / "future-gateway"
    tls_dir.mkdir()
    cert, key = ca.write_tls_pair(["127.0.0.1"], tls_dir, "gateway")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cadata=ca.certificate_pem)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ready, stop = threading.Event(), threading.Event()
    bound: list[int] = []

    async def newer_gateway(ws: ServerConnection) -> None:
        await ws.recv()  # the hello
        await ws.send(json.dumps({"v": wire.VERSION + 1, "type": "desired", "revision": 99,
                                  "serverId": agent.server_id, "serverName": "x"}))
        await ws.wait_closed()
        if ws.close_code is not None:
            closes.append((ws.close_code, ws.close_reason or ""))

    async def run() -> None:
        async with serve(newer_gateway, "127.0.0.1", 0, ssl=ctx) as server:
            bound.append(next(iter(server.sockets)).getsockname()[1])
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    assert ready.wait(10)
    identity_path = agent.directory / "identity.json"
    identity = json.loads(identity_path.read_text())
    identity["gatewayUrl"] = f"wss://127.0.0.1:{bound[0]}{wire.CONNECT_PATH}"
    identity_path.write_text(json.dumps(identity))
    try:
        agent.start()
        eventually(lambda: list(closes), what="the agent closing the newer gateway's connection")
        assert closes[0][0] == wire.CLOSE_UNSUPPORTED_VERSION
        assert f"version {wire.VERSION + 1}" in closes[0][1]
        assert agent.proc is not None and agent.proc.poll() is None
        assert ask(port)["version"] == "v1"  # the application was left alone
        # said once the connection is closed: the close can be seen here first
        eventually(agent.output, lambda out: "cannot understand the control plane" in out,
                   timeout=10, what="the agent saying why it closed")
        # it retries at its long back-off, not in a loop that hammers the control plane
        time.sleep(2)  # proves something does not happen: no loop of reconnections
        assert len(closes) <= 2, closes
    finally:
        stop.set()
        thread.join(10)
