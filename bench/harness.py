"""The parts every scenario uses: a `corral serve` process with its resource figures, a fleet of
registered simulated agents, and an authenticated API client."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from corral.client import Client
from corral.pki.keys import new_key_request

PASSWORD = "bench-admin-password"
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class ControlPlaneProcess:
    workdir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started: bool = False
    env: dict[str, str] = field(default_factory=lambda: {
        # every simulated agent registers from 127.0.0.1: lift the per-address limit
        "CORRAL_REGISTRATION_RATE_PER_MINUTE": "0"})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway(self) -> str:
        return f"wss://127.0.0.1:{self.gateway_port}/mule"

    @property
    def ca(self) -> Path:
        return self.workdir / "data" / "pki" / "ca.pem"

    def start(self) -> float:
        env = {**os.environ, "CORRAL_DATABASE_URL": self.database_url,
               "CORRAL_ADMIN_PASSWORD": PASSWORD,
               **self.env}
        if os.environ.get("CORRAL_BENCH_SERVE_SRC"):
            # measure another revision's control plane (its `src` folder) with this harness,
            # to compare two revisions in one run
            env["PYTHONPATH"] = os.environ["CORRAL_BENCH_SERVE_SRC"]
        log = open(self.workdir / "serve.log", "ab")  # noqa: SIM115
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "serve", "--data-dir", str(self.workdir / "data"),
             "--port", str(self.port), "--gateway-port", str(self.gateway_port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        log.close()
        while time.monotonic() - t0 < 60:
            if not self.started and self.proc.poll() is not None and "cannot listen" in \
                    (self.workdir / "serve.log").read_text(errors="replace")[-2000:]:
                # a port chosen free was taken before the control plane bound it (tests run
                # beside this): choose others; a restart keeps its ports (agents know them)
                self.port, self.gateway_port = free_port(), free_port()
                return self.start()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    self.started = True
                    return time.monotonic() - t0
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("corral serve did not start; see " + str(self.workdir / "serve.log"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK

    def cpu_percent(self, seconds: float) -> float:
        before, t0 = self.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        return 100 * (self.cpu_seconds() - before) / (time.monotonic() - t0)


class Api:
    """An admin's client of the control plane (`corral.client`), raising on any refusal."""

    def __init__(self, cp: ControlPlaneProcess) -> None:
        self.client = Client(cp.url, timeout=300)
        self.http = self.client.http
        self.login()

    @property
    def headers(self) -> dict[str, str]:
        return self.client.headers

    def login(self) -> None:
        self.client.login("admin", PASSWORD)
        self.client.use_environment("Production")

    def call(self, method: str, path: str, **kw: Any) -> Any:
        return self.client.hybrid(method, path, **kw)


def register_fleet(cp: ControlPlaneProcess, api: Api, n: int, folder: Path,
                   concurrency: int = 16, timing: dict[str, float] | None = None
                   ) -> list[dict[str, str]]:
    """N servers registered through the API, each with its own key and certificate. The keys
    and CSRs are made first; `timing["registration_s"]` is then the time of the N calls."""
    folder.mkdir(parents=True, exist_ok=True)
    token = api.call("GET", "/servers/registrationToken")
    requests = [new_key_request(f"sim-{i}") for i in range(n)]

    async def one(i: int, client: httpx.AsyncClient, gate: asyncio.Semaphore) -> dict[str, str]:
        request = requests[i]
        async with gate:
            r = await client.post("/hybrid/api/v1/servers", json={
                "muleLabel": f"sim-{i:05d}", "signatureRequest": request.csr_pem,
                "agentVersion": "sim"}, headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        body = r.json()
        pem = folder / f"{body['serverId']}.pem"
        pem.write_text(body["certificate"] + request.key_pem.decode())
        return {"id": str(body["serverId"]), "pem": str(pem)}

    async def all_of_them() -> list[dict[str, str]]:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=cp.url, timeout=120) as client:
            return list(await asyncio.gather(*[one(i, client, gate) for i in range(n)]))

    t0 = time.monotonic()
    identities = asyncio.run(all_of_them())
    if timing is not None:
        timing["registration_s"] = time.monotonic() - t0
    return identities


class Simulators:
    """Simulator processes (a few hundred to thousands of agents each) and their events."""

    def __init__(self, cp: ControlPlaneProcess, identities: list[dict[str, str]],
                 workdir: Path, processes: int = 2, measure: bool = False,
                 renew: bool = False) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.renewals: list[tuple[float, float]] = []  # (asked, answered), epoch seconds
        self.refusals: list[str] = []
        self.synced: dict[int, int] = {}
        self.answered: dict[tuple[str, int, str], list[float]] = defaultdict(list)
        self._readers: list[Any] = []
        import threading

        self._lock = threading.Lock()
        for p in range(processes):
            part = identities[p::processes]
            if not part:
                continue
            listing = workdir / f"sim-{p}.jsonl"
            listing.write_text("\n".join(json.dumps(i) for i in part) + "\n")
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.simagent", str(listing), cp.gateway, str(cp.ca),
                 *(["--measure"] if measure else []), *(["--renew"] if renew else [])],
                stdout=subprocess.PIPE, stderr=open(workdir / f"sim-{p}.log", "ab"),  # noqa: SIM115
                text=True, cwd=Path(__file__).resolve().parents[1])
            self.procs.append(proc)
            t = threading.Thread(target=self._read, args=(p, proc), daemon=True)
            t.start()
            self._readers.append(t)

    def _read(self, index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            with self._lock:
                if event["event"] == "synced":
                    self.synced[index] = int(event["count"])
                elif event["event"] == "renewed":
                    self.renewals.append((float(event["asked"]), float(event["answered"])))
                elif event["event"] == "renewal_refused":
                    self.refusals.append(str(event["why"]))
                elif event["event"] == "answered":
                    key = (event["app"], int(event["deployment"]), event["status"])
                    self.answered[key].append(float(event["t"]))

    def total_synced(self) -> int:
        with self._lock:
            return sum(self.synced.values())

    def answers(self, app: str, deployment: int, status: str) -> list[float]:
        with self._lock:
            return list(self.answered[(app, deployment, status)])

    def wait(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def connect_once(cp: ControlPlaneProcess, identities: list[dict[str, str]],
                 workdir: Path) -> None:
    """Each agent connects once and goes away: a server that never connected takes no
    deployment (as in ARM), and a bench of the API should not measure agents' traffic."""
    sims = Simulators(cp, identities, workdir)
    try:
        if not sims.wait(lambda: sims.total_synced() >= len(identities), timeout=600):
            raise RuntimeError(f"not all {len(identities)} agents connected within 600 s")
    finally:
        sims.stop()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def clean(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@contextmanager
def load_balanced(backends: list[ControlPlaneProcess], workdir: Path
                  ) -> Iterator[ControlPlaneProcess]:
    """HAProxy with the documented configuration (`docs/haproxy.cfg`) in front of these
    replicas' APIs; the control plane it yields is the first replica reached through it (its
    gateway, CA and folder are the first replica's)."""
    binary = shutil.which("haproxy")
    if binary is None:
        raise RuntimeError("HAProxy is not installed (Debian package haproxy)")
    documented = Path(__file__).resolve().parents[1] / "docs" / "haproxy.cfg"
    lines = [line for line in documented.read_text().splitlines()
             if not line.strip().startswith("server replica")]  # the last lines of the file
    lines += [f"    server replica{i + 1} 127.0.0.1:{b.port} check"
              for i, b in enumerate(backends)]
    config = workdir / "haproxy.cfg"
    config.write_text("\n".join(lines) + "\n")
    front = replace(backends[0], port=free_port())
    with open(workdir / "haproxy.log", "wb") as log:
        proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "CORRAL_LB_BIND": f"127.0.0.1:{front.port}"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(front.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("HAProxy did not answer; see " + str(workdir / "haproxy.log"))
            time.sleep(0.1)
        yield front
    finally:
        proc.terminate()
        proc.wait(10)
