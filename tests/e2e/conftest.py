"""Real `corral` processes on free ports, and a small HTTP client for them."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.client import Client
from tests.arm_shapes import check_answer
from tests.support import at_newest_revision, eventually

CORRAL = [sys.executable, "-m", "corral"]


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port for a server, below the kernel's range for outgoing connections: a port taken
    from that range (bind to 0) can be given to some client's connection while the server on
    it restarts, and the server then cannot bind it again."""
    low, high = 20000, 32000
    with contextlib.suppress(OSError, ValueError), \
            open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        high = min(high, int(f.read().split()[0]))
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
    proc: subprocess.Popen[bytes] | None = None
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
        self.proc = subprocess.Popen(
            [*CORRAL, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
             "--gateway-port", str(self.gateway_port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"corral serve exited early:\n{self.output()}")
            if self.tls and not self.ca_path.exists():
                time.sleep(0.1)
                continue
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1,
                             verify=self.verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
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
            raise

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def serve(tmp_path: Path, database_url: str, sqlite_template: Path) -> Iterator[ServeProcess]:
    """A control plane not started yet, on a database at the newest revision and empty: its
    first start creates the organization, as after `corral db upgrade`. Starting from no file
    at all is the README tour's (tests/e2e/test_readme_tour.py)."""
    at_newest_revision(database_url, sqlite_template)
    proc = ServeProcess(data_dir=tmp_path / "data", database_url=database_url)
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop(signal.SIGKILL)


# --- an operator's HTTP client ------------------------------------------------------------


class Operator:
    """Logs in (as admin unless told) and drives the hybrid API of a running control plane."""

    def __init__(self, serve: ServeProcess, password: str, username: str = "admin",
                 environment: str = "Production") -> None:
        self.client = Client(serve.url, verify=serve.verify, timeout=30)
        self.client.login(username, password)
        self.client.use_environment(environment)
        self.http = self.client.http  # bare: no token unless a test passes `headers`
        self.headers = self.client.headers
        self.serve = serve

    def call(self, method: str, path: str, expect: int | None = None, **kw: object) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
        r = self.http.request(method, f"/hybrid/api/v1{path}", headers=headers, **kw)  # type: ignore[arg-type]
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        check_answer(path, r)
        return r

    def data(self, path: str) -> Any:
        return self.call("GET", path, expect=200).json()["data"]

    def registration_token(self) -> str:
        return str(self.data("/servers/registrationToken"))

    def deploy(self, name: str, target: int, archive: bytes, properties: dict[str, str] | None = None) -> dict[str, Any]:
        form = {"artifactName": name, "targetId": str(target)}
        if properties:
            form["configuration"] = json.dumps({"mule.agent.application.properties.service": {
                "applicationName": name, "properties": properties}})
        return self.call("POST", "/applications", expect=202, data=form,
                         files={"file": (f"{name}.zip", archive, "application/zip")}).json()["data"]

    def _until(self, path: str, check: Callable[[dict[str, Any]], bool], timeout: float,
               what: str) -> dict[str, Any]:
        return eventually(lambda: self.data(path), check, timeout=timeout,
                          what=f"{path} {what}")

    def wait_app(self, app_id: int, status: str, timeout: float = 30) -> dict[str, Any]:
        """Poll until the application's aggregated status is `status`; for STARTED, until it
        is done, as ARM's clients wait: `desiredStatus` STARTED too, not UPDATED (it already
        runs on some servers, not yet on all; ADR 0006)."""
        def reached(a: dict[str, Any]) -> bool:
            return bool(a["lastReportedStatus"] == status
                        and (status != "STARTED" or a["desiredStatus"] == "STARTED"))

        return self._until(f"/applications/{app_id}", reached, timeout, f"reached {status}")

    def wait_server(self, server_id: int, status: str, timeout: float = 30) -> dict[str, Any]:
        return self._until(f"/servers/{server_id}", lambda s: s["status"] == status, timeout,
                           f"became {status}")


ADMIN_PASSWORD = "e2e-admin-password"


@pytest.fixture
def control_plane(serve: ServeProcess) -> ServeProcess:
    serve.env["CORRAL_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    serve.start()
    return serve


@pytest.fixture
def operator(control_plane: ServeProcess) -> Operator:
    return Operator(control_plane, ADMIN_PASSWORD)


# --- agents -------------------------------------------------------------------------------


@dataclass
class AgentProcess:
    directory: Path
    proc: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()

    @property
    def log_path(self) -> Path:
        return self.directory.parent / f"{self.directory.name}.agent.log"

    @property
    def server_id(self) -> int:
        return int(json.loads((self.directory / "identity.json").read_text())["serverId"])

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([*CORRAL, "agent", "run", "--dir", str(self.directory),
                                      *self.args],
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
    return subprocess.run(
        [*CORRAL, "agent", "register", "--manager", serve.url, "--dir", str(directory), *tls,
         token, name],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


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


@pytest.fixture
def agents(tmp_path: Path, control_plane: ServeProcess, operator: Operator) -> Iterator[Callable[..., AgentProcess]]:
    """A factory of registered, running agents; all stopped and their apps ended afterwards.

    Their folders sit in a folder of their own under /tmp, not under pytest's (mode 0700):
    agents run as root here and start applications as `nobody`, who must be able to reach them,
    as under /var/lib on a real server."""
    started: list[AgentProcess] = []
    base = Path(tempfile.mkdtemp(prefix="corral-agents-"))
    base.chmod(0o711)

    def make(name: str, *args: str, on: Operator | None = None) -> AgentProcess:
        """`on`: the operator of another environment, to register there."""
        who = on or operator
        agent = AgentProcess(base / name, args=args)
        enroll(control_plane, who.registration_token(), name, agent.directory)
        agent.start()
        started.append(agent)
        who.wait_server(agent.server_id, "RUNNING")
        return agent

    yield make
    for agent in started:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()
    kill_processes_under(base)
    shutil.rmtree(base, ignore_errors=True)


# --- application archives -----------------------------------------------------------------

WEB_APP = '''
import http.server, json, os, sys
VERSION = {version!r}
def levels():  # the convention for log levels: re-read the file the agent keeps current
    try:
        with open(os.environ.get("CORRAL_LOG_LEVELS_FILE", "")) as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line)
    except OSError:
        return None
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"version": VERSION, "pid": os.getpid(), "argv": sys.argv[1:],
                           "env": dict(os.environ), "logLevels": levels()}}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): print("request", *a, flush=True)
print("listening on", os.environ["PORT"], flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def app_zip(version: str = "v1", procfile: str = "web: python3 app.py ${greeting}\n",
            extra: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", procfile)
        z.writestr("app.py", WEB_APP.format(version=version))
        for name, content in (extra or {}).items():
            z.writestr(name, content)
    return buf.getvalue()


def ask(port: int, timeout: float = 2, settle: float = 10) -> dict[str, Any]:
    """The test application's answer. A process reported STARTED without a health check may
    not listen yet, and one being replaced by a redeploy may reset a connection it accepted:
    both are retried for `settle` seconds (0: ask once)."""
    deadline = time.monotonic() + settle
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=timeout).json()  # type: ignore[no-any-return]
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def app_port(agent: AgentProcess, name: str) -> int:
    state = json.loads((agent.directory / "state.json").read_text())
    return int(state["apps"][name]["port"])


# --- where alert notifications arrive ----------------------------------------------------

class SmtpSink:
    """A real SMTP server (aiosmtpd) on a local port, keeping every message it receives.
    It can be stopped and started again on the same port (a mail server that was away)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[dict[str, Any]] = []
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        parsed = email.message_from_bytes(envelope.content)
        self.messages.append({"from": envelope.mail_from, "to": sorted(envelope.rcpt_tos),
                              "subject": parsed["Subject"], "body": parsed.get_payload()})
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def with_subject(self, words: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if words in (m["subject"] or "")]


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


class WebhookSink:
    """A real HTTP receiver: it keeps each POST's headers and body; a path ending in /fail
    answers 500."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received.append((self.path, dict(self.headers), body))
                self.send_response(500 if self.path.endswith("/fail") else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.server.shutdown()
