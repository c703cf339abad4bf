"""Real `corral` processes on free ports: the control plane (`ServeProcess`), agents
(`AgentProcess`), and registering one."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.forkserver import Forked, ForkServer
from tests.support import local_http

CORRAL = [sys.executable, "-m", "corral"]
"""A fresh interpreter running `corral`: for the tests whose subject is one. The others start
`corral` through the fork server (`FORKS`, tests/forkserver.py)."""
FORKS = ForkServer()


_GIVEN: set[int] = set()


def _ports() -> tuple[int, int]:
    """This test worker's share of the servers' ports, below the kernel's range for outgoing
    connections. Each worker has its own: workers that drew from one range could draw the
    same port, free when each looked, and the second server to bind it exited ("address
    already in use")."""
    low, high = 20000, 32000
    with contextlib.suppress(OSError, ValueError), \
            open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        high = min(high, int(f.read().split()[0]))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    share = (high - low) // max(workers, 1)
    first = low + share * (int(worker) if worker.isdigit() else 0)
    return first, first + share


def free_port() -> int:
    """A port for a server, from this worker's share (`_ports`): a port taken from the
    kernel's range for outgoing connections (bind to 0) can be given to some client's
    connection while the server on it restarts, and the server then cannot bind it again."""
    low, high = _ports()
    for _ in range(200):
        port = random.randrange(low, high)
        if port in _GIVEN:
            continue  # free now, but promised to a server of this process already
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServeProcess:
    """`corral serve` as an operator runs it; output goes to a log file for post-mortems."""

    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: Forked | None = None
    starts: int = 0
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "pki" / "ca.pem"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client trusts: Corral's own CA when the API speaks TLS."""
        return ssl.create_default_context(cafile=str(self.ca_path)) if self.tls else True

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"serve-{self.port}.log"

    def start(self, timeout: float = 30) -> None:
        self.starts += 1
        env = {**os.environ, "CORRAL_DATABASE_URL": self.database_url,
               "CORRAL_API_TLS": "true" if self.tls else "false", **self.env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = FORKS.popen(
            ["serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
             "--gateway-port", str(self.gateway_port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        http: httpx.Client | None = None if self.tls else local_http()
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"corral serve exited early:\n{self.output()}")
                if http is None:  # with TLS, a client that trusts the CA once it exists
                    if not self.ca_path.exists():
                        time.sleep(0.1)
                        continue
                    http = httpx.Client(verify=self.verify, timeout=1)
                try:
                    if http.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        finally:
            if self.tls and http is not None:
                http.close()
        raise RuntimeError(f"corral serve did not become ready:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"corral serve did not end within {timeout:g} s of signal "
                               f"{sig}; its log ends:\n{self.output()[-4000:]}") from None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class AgentProcess:
    directory: Path
    proc: Forked | None = None
    args: tuple[str, ...] = ()

    @property
    def log_path(self) -> Path:
        return self.directory.parent / f"{self.directory.name}.agent.log"

    @property
    def server_id(self) -> int:
        return int(json.loads((self.directory / "identity.json").read_text())["serverId"])

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = FORKS.popen(["agent", "run", "--dir", str(self.directory), *self.args],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(20)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def local_api(self) -> str:
        """The agent's loopback API (CORRAL_AGENT_URL of its applications)."""
        saved = json.loads((self.directory / "agent.json").read_text())
        return f"http://127.0.0.1:{saved['apiPort']}/{saved['apiPrefix']}"

    def app_url(self, name: str) -> str:
        """The local API's URL application `name` is given (its own `CORRAL_AGENT_URL`)."""
        from corral.agent.local_api import app_url
        return app_url(self.local_api, name)

    def app_pids(self, name: str) -> list[int]:
        """Live processes whose working folder is this agent's copy of application `name`."""
        root = (self.directory / "apps" / name).resolve()
        return [pid for pid, cwd in _process_cwds() if cwd == root or root in cwd.parents]

    def app_copies(self, name: str) -> int:
        """How many copies of the application run: one process group each (`sh -c` + child)."""
        groups = set()
        for pid in self.app_pids(name):
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        return len(groups)


def ca_fingerprint(serve: ServeProcess) -> str:
    """What an operator reads next to the registration token, from the CA on disk."""
    from cryptography import x509

    from corral.pki.keys import fingerprint_of
    return fingerprint_of(x509.load_pem_x509_certificate(serve.ca_path.read_bytes()))


def register_agent(serve: ServeProcess, token: str, name: str, directory: Path,
                   *extra: str) -> subprocess.CompletedProcess[str]:
    if serve.tls:
        tls = ["--ca-cert", str(serve.ca_path)]
    elif "--insecure" in extra:
        tls = []
    else:
        tls = ["--ca-fingerprint", ca_fingerprint(serve)]
    tls = [*tls, *extra]
    return FORKS.run(
        ["agent", "register", "--manager", serve.url, "--dir", str(directory), *tls, token, name],
        timeout=60)


def enroll(serve: ServeProcess, token: str, name: str, directory: Path) -> None:
    """Register a server with the agent's own registration code, in this process: what
    `corral agent register` runs, without starting a Python for it (TestRegistration and the
    security suite run the command itself)."""
    from corral.agent.register import register

    if serve.tls:
        register(serve.url, directory, token, name, serve.ca_path)
    else:
        register(serve.url, directory, token, name, ca_fingerprint=ca_fingerprint(serve))


def _process_cwds() -> list[tuple[int, Path]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), Path(os.readlink(entry / "cwd"))))
            except OSError:
                continue
    return found


def kill_processes_under(root: Path) -> None:
    """Teardown: application processes outlive agents by design; end those of this test."""
    root = root.resolve()
    for pid, cwd in _process_cwds():
        if cwd == root or root in cwd.parents:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
