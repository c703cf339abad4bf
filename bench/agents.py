"""Real agents, for the figures that need real application processes (a rollout's health check,
a replica killed under the agents it holds): `corral agent run` processes registered with the
agent's own code, and a small web application whose version is known."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from bench.harness import Api, ControlPlaneProcess
from corral.agent.register import register
from corral.pki.keys import fingerprint_of

NEVER_HEALTHY = '[health]\nhttp = "/healthz"\ntimeout = 4\n'
"""A health check that no process of `web_zip(..., listens=False)` passes: the agent gives up
after 4 s and the rollout fails on that server."""


def web_zip(version: str, *, listens: bool = True, health: str | None = None) -> bytes:
    """Python's http.server over a folder holding `version.txt`; with `listens=False`, a process
    that never listens (a version whose health check cannot pass)."""
    command = "python3 -m http.server --bind 127.0.0.1 $PORT" if listens else "sleep 3600"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", f"web: {command}\n")
        z.writestr("version.txt", version)
        if health:
            z.writestr("corral.toml", health)
    return buf.getvalue()


@dataclass
class Agent:
    directory: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def server_id(self) -> int:
        return int(json.loads((self.directory / "identity.json").read_text())["serverId"])

    def start(self) -> None:
        log = open(self.directory.parent / f"{self.directory.name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "agent", "run", "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()


class Agents:
    """Registered, running agents in a folder of their own under /tmp: a root agent runs its
    applications as `nobody`, who must be able to reach their folders. `close` ends the agents
    and their applications (which outlive an agent by design)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="corral-bench-agents-"))
        self.base.chmod(0o711)
        self.started: list[Agent] = []

    def add(self, cp: ControlPlaneProcess, api: Api, name: str) -> Agent:
        token = str(api.call("GET", "/servers/registrationToken"))
        pin = fingerprint_of(x509.load_pem_x509_certificate(cp.ca.read_bytes()))
        agent = Agent(self.base / name)
        register(cp.url, agent.directory, token, name, ca_fingerprint=pin)
        agent.start()
        self.started.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.started:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait()
        root = self.base.resolve()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cwd = Path(os.readlink(entry / "cwd"))
                if cwd == root or root in cwd.parents:
                    os.killpg(int(entry.name), signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)
