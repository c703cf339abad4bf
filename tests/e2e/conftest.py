"""Fixtures of the end-to-end tests: a control plane, an operator, agents, notification sinks.
The parts they are made of live beside this file (processes, operator, apps, sinks)."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.operator import ADMIN_PASSWORD, Cli, Operator
from tests.e2e.processes import (
    AgentProcess,
    ServeProcess,
    enroll,
    kill_processes_under,
)
from tests.e2e.sinks import SmtpSink, WebhookSink
from tests.support import at_newest_revision


@pytest.fixture
def password_hash() -> str | None:
    """`CORRAL_PASSWORD_HASH` of the control planes started here. These tests sign in and
    make users hundreds of times and their subject is not the hash's cost: OWASP's profile
    costs a sixth of the default's CPU. The attack suite runs the default (its own fixture),
    and `python -m bench security` measures it."""
    return "owasp"


@pytest.fixture
def serve(tmp_path: Path, database_url: str, sqlite_template: Path,
          password_hash: str | None) -> Iterator[ServeProcess]:
    """A control plane not started yet, on a database at the newest revision and empty: its
    first start creates the organization, as after `corral db upgrade`. Starting from no file
    at all is the README tour's (tests/e2e/test_readme_tour.py)."""
    at_newest_revision(database_url, sqlite_template)
    proc = ServeProcess(data_dir=tmp_path / "data", database_url=database_url,
                        env={"CORRAL_PASSWORD_HASH": password_hash} if password_hash else {})
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop(signal.SIGKILL)


@pytest.fixture
def control_plane(serve: ServeProcess) -> ServeProcess:
    serve.env["CORRAL_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    serve.start()
    return serve


@pytest.fixture
def operator(control_plane: ServeProcess) -> Operator:
    return Operator(control_plane, ADMIN_PASSWORD)


@pytest.fixture
def cli(tmp_path: Path, control_plane: ServeProcess) -> Cli:
    """`corral` signed in as the admin, in Production."""
    c = Cli(tmp_path)
    c("login", "--url", control_plane.url, "--username", "admin", "--password", ADMIN_PASSWORD)
    return c


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


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.server.shutdown()
