"""A fleet simulator process: many agents, each a real TLS websocket client with its own
client certificate, speaking the real agent protocol and answering desired state the way a fast
agent would (STARTED/STOPPED at once, no processes). Events go to stdout as JSON lines.

    python -m bench.simagent IDENTITIES.jsonl GATEWAY_URL CA.pem [--measure] [--renew]

With --measure, each agent also sends what a real agent measures (one server and one
application instance) every `metricsSeconds` of its desired state. With --renew, an agent asked
to renew its certificate (`renewCertificateWithin`, a CA rotation) does as the real agent does:
a new key at a random moment of the window, its CSR over the connection, the certificate back,
then straight back with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from corral import wire
from corral.agent.backoff import Backoff
from corral.pki.keys import new_key_request

CONNECT_AT_ONCE = 100


def emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Fleet:
    def __init__(self, identities: list[dict[str, str]], url: str, ca: str,
                 measure: bool = False, renew: bool = False) -> None:
        self.identities = identities
        self.measure = measure
        self.renew = renew
        self.url = url
        self.ca = ca
        self.synced = 0  # agents that hold their desired state on a live connection
        self.answered: set[tuple[int, str, int, str]] = set()
        self.gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def agent(self, ident: dict[str, str]) -> None:
        backoff = Backoff()
        hello = wire.encode(wire.Hello(agentVersion="sim", hostname=f"sim-{ident['id']}"))
        while True:
            ctx = ssl.create_default_context(cadata=self.ca)
            ctx.load_cert_chain(ident["pem"])  # a renewal replaces it
            live = False
            pause = None
            renewed: list[bool] = []  # the renewal says so before it closes the connection
            try:
                async with self.gate:
                    ws = await connect(self.url, ssl=ctx, open_timeout=60,
                                       ping_interval=wire.AGENT_PING_SECONDS, ping_timeout=20,
                                       max_size=16 * 1024 * 1024, compression=None)
                async with ws:
                    await ws.send(hello)
                    measuring: asyncio.Task[None] | None = None
                    renewing: asyncio.Task[None] | None = None
                    answer: asyncio.Future[wire.CertificateIssued] = \
                        asyncio.get_running_loop().create_future()
                    try:
                        async for raw in ws:
                            message = wire.decode(raw)
                            if isinstance(message, wire.Desired):
                                if not live:
                                    live = True
                                    backoff.reset()
                                    self.synced += 1
                                await ws.send(self.answer(int(ident["id"]), message))
                                if self.measure and measuring is None \
                                        and message.metricsSeconds > 0:
                                    measuring = asyncio.create_task(
                                        self.measurements(ws, message.metricsSeconds))
                                if self.renew and renewing is None \
                                        and message.renewCertificateWithin is not None:
                                    renewing = asyncio.create_task(self.renewal(
                                        ws, ident, message.renewCertificateWithin, answer,
                                        renewed))
                            elif isinstance(message, wire.CertificateIssued) \
                                    and not answer.done():
                                answer.set_result(message)
                    finally:
                        if measuring is not None:
                            measuring.cancel()
                        if renewing is not None:
                            renewing.cancel()
            except ConnectionClosed as exc:
                if exc.rcvd and exc.rcvd.code == wire.CLOSE_RESTARTING:  # as the agent does
                    pause = random.uniform(0, wire.reconnect_window(exc.rcvd.reason))
            except (OSError, InvalidHandshake, TimeoutError):
                pass
            if live:
                self.synced -= 1
            if not renewed:
                await asyncio.sleep(backoff.next() if pause is None else pause)

    @staticmethod
    async def renewal(ws: Any, ident: dict[str, str], within: float,
                      answer: asyncio.Future[wire.CertificateIssued],
                      renewed: list[bool]) -> None:
        await asyncio.sleep(random.uniform(0, within))
        request = new_key_request(ident["id"])
        asked = time.time()
        await ws.send(wire.encode(wire.RenewCertificate(signatureRequest=request.csr_pem)))
        issued = await asyncio.wait_for(answer, 120)
        answered = time.time()
        if not issued.certificate:
            emit({"event": "renewal_refused", "server": int(ident["id"]), "why": issued.error})
            return
        Path(ident["pem"]).write_text(issued.certificate + request.key_pem.decode())
        emit({"event": "renewed", "server": int(ident["id"]), "asked": asked,
              "answered": answered})
        renewed.append(True)
        await ws.close(1000, wire.RENEWED_REASON)

    def answer(self, server_id: int, desired: wire.Desired) -> str:
        now = time.time()
        apps = []
        for app in desired.applications:
            status = "STARTED" if app.desiredStatus == "STARTED" else "STOPPED"
            key = (server_id, app.name, app.deploymentId, status)
            if key not in self.answered:
                self.answered.add(key)
                emit({"event": "answered", "server": server_id, "app": app.name,
                      "deployment": app.deploymentId, "status": status, "t": now})
            apps.append(wire.ApplicationReport(name=app.name, deploymentId=app.deploymentId,
                                                   status=status))
        return wire.encode(wire.Report(revision=desired.revision, applications=apps))

    @staticmethod
    async def measurements(ws: Any, every: float) -> None:
        """Spread over the interval, as real agents started at different times are."""
        await asyncio.sleep(random.uniform(0, every))
        while True:
            sample = wire.Measurements(
                server=wire.ServerSample(
                    cpu=random.uniform(0, 100), memoryUsed=random.randint(1, 2**33),
                    memoryTotal=2**34, diskUsed=random.randint(1, 2**38), diskTotal=2**39,
                    loadAverage=random.uniform(0, 4), threads=random.randint(20, 400)),
                applications=[wire.InstanceSample(
                    name="app", cpu=random.uniform(0, 200), rss=random.randint(1, 2**30),
                    threads=12, fds=40, restarts=0, uptime=100.0, messages=random.randint(0, 99),
                    errors=0, responseTimeMs=random.uniform(1, 50))])
            await ws.send(wire.encode(sample))
            await asyncio.sleep(every)

    async def report_counts(self) -> None:
        last = -1
        while True:
            if self.synced != last:
                last = self.synced
                emit({"event": "synced", "count": last, "t": time.time()})
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.agent(i)) for i in self.identities]
        tasks.append(asyncio.create_task(self.report_counts()))
        await asyncio.gather(*tasks)


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    identities = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines()]
    fleet = Fleet(identities, sys.argv[2], Path(sys.argv[3]).read_text(),
                  measure="--measure" in sys.argv[4:], renew="--renew" in sys.argv[4:])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(fleet.run())


if __name__ == "__main__":
    main()
