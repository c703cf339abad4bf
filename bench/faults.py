"""What faults cost in time, with real agents and real application processes: a rollout that
fails its health check and is reverted, a replica killed under the agents it holds (and the
leader with it), PostgreSQL restarted under calls. The tests assert what must hold afterwards
(`tests/e2e/test_rollouts.py`, `tests/e2e/test_high_availability.py`); these are the figures."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench.agents import NEVER_HEALTHY, Agent, Agents, web_zip
from bench.harness import Api, ControlPlaneProcess, free_port, percentile


def until(check: Callable[[], bool], timeout: float, since: float, what: str) -> float:
    """Seconds from `since` until `check()` holds (polled every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError, IndexError):
            if check():
                return round(time.monotonic() - since, 2)
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not within {timeout:g} s")


def _running(api: Api, agent: Agent) -> Callable[[], bool]:
    return lambda: api.call("GET", f"/servers/{agent.server_id}")["status"] == "RUNNING"


def _group_app(api: Api, cp: ControlPlaneProcess, agents: Agents, name: str, size: int
               ) -> tuple[list[Agent], dict[str, Any], dict[str, Any]]:
    """`size` agents in a group, and an application on it, STARTED: (members, group, app)."""
    members = [agents.add(cp, api, f"{name}-{i}") for i in range(size)]
    for m in members:
        until(_running(api, m), 60, time.monotonic(), f"server {m.server_id} RUNNING")
    group = api.call("POST", "/serverGroups", json={
        "name": name, "serverIds": [m.server_id for m in members]})
    app = api.client.apps.deploy(name, group["id"], (f"{name}.zip", web_zip("v1")))
    until(lambda: _done(api.call("GET", f"/applications/{app['id']}")), 60, time.monotonic(),
          "the first version STARTED")
    return members, group, app


def _done(app: dict[str, Any], deployment: int | None = None) -> bool:
    """STARTED as ARM's clients wait for it (desired STARTED too, not UPDATED), on every server;
    with `deployment`, every instance on that one."""
    return bool(app["lastReportedStatus"] == "STARTED" and app["desiredStatus"] == "STARTED"
                and all(i["lastReportedStatus"] == "STARTED"
                        and (deployment is None or i["deploymentId"] == deployment)
                        for i in app["serverArtifacts"]))


# --- a rollout reverted, and a healthy one ---------------------------------------------------


def rollouts(cp: ControlPlaneProcess, rounds: int) -> dict[str, Any]:
    """Three servers on v1. Each round redeploys a version whose health check never passes
    (4 s timeout), one server at a time with autoRevert, and times the revert; then a healthy
    version one at a time, sampling how many servers are STARTED every 100 ms."""
    api = Api(cp)
    agents = Agents()
    try:
        _, _, app = _group_app(api, cp, agents, "svc", 3)
        path = f"/applications/{app['id']}"

        def redeploy(archive: bytes, rollout: str) -> None:
            api.call("PATCH", path, data={"rollout": rollout},
                     files={"file": ("svc.zip", archive, "application/zip")})

        def on(deployment: int) -> bool:
            return _done(api.call("GET", path), deployment)

        def newest() -> dict[str, Any]:
            return dict(api.call("GET", f"{path}/deployments")[0])

        reverts: list[dict[str, Any]] = []
        broken = web_zip("broken", listens=False, health=NEVER_HEALTHY)
        for _ in range(rounds):
            before = int(api.call("GET", path)["serverArtifacts"][0]["deploymentId"])
            t0 = time.monotonic()
            redeploy(broken, '{"maxParallel": 1, "autoRevert": true, '
                             '"healthDeadlineSeconds": 30}')
            ordered = until(lambda: newest()["rollout"]["state"] == "REVERTED", 90, t0,
                            "the broken version reverted")
            back = until(partial(on, before), 60, t0, "every server STARTED on the version before")
            reverts.append({"revert_ordered_s": ordered,
                            "past_health_timeout_s": round(ordered - 4, 2),
                            "old_version_back_s": back,
                            "servers_ran_it": len(newest()["rollout"]["updated"])})

        healthy: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    shown = api.call("GET", path)
                    healthy.append(sum(1 for i in shown["serverArtifacts"]
                                       if i["lastReportedStatus"] == "STARTED"))
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        redeploy(web_zip("v2"), '{"maxParallel": 1, "minHealthySeconds": 1}')
        took = until(lambda: newest()["rollout"]["state"] == "SUCCEEDED", 120, t0,
                     "the healthy rollout done")
        stop.set()
        sampler.join()
        return {"servers": 3, "health_check_timeout_s": 4, "reverts": reverts,
                "healthy": {"rollout_s": took, "samples": len(healthy),
                            "fewest_started": min(healthy), "most_started": max(healthy)}}
    finally:
        agents.close()


# --- a replica killed under its agents ---------------------------------------------------------


def _logged(cp: ControlPlaneProcess, needle: str) -> bool:
    return needle in (cp.workdir / "serve.log").read_text(errors="replace")


def replica_failover(a: ControlPlaneProcess, b: ControlPlaneProcess) -> dict[str, Any]:
    """Replica A started first (it leads) and holds three agents (the first gateway they are
    given), whose group runs an application. A deploy to the group is sent through A, and A is
    killed with SIGKILL at once. Timed from the kill: each agent connected to B, the deploy
    STARTED on all three (through B), and B doing the leader's work."""
    api_a, api_b = Api(a), Api(b)
    agents = Agents()
    try:
        until(lambda: _logged(a, "now does the singleton work"), 30, time.monotonic(),
              "replica A leading")
        members, group, _ = _group_app(api_a, a, agents, "trio", 3)
        for m in members:
            if not _logged(a, f"server {m.server_id} connected"):
                raise RuntimeError(f"server {m.server_id} is not held by replica A")
        during = api_a.client.apps.deploy("during", group["id"], ("during.zip", web_zip("v2")))
        assert a.proc is not None
        a.proc.kill()
        killed = time.monotonic()
        a.proc.wait()
        held = [until(partial(_logged, b, f"server {m.server_id} connected"), 60, killed,
                      f"server {m.server_id} held by B") for m in members]
        leading = until(lambda: _logged(b, "now does the singleton work"), 60, killed,
                        "replica B leading")
        deployed = until(lambda: _done(api_b.call("GET", f"/applications/{during['id']}")), 90,
                         killed, "the deploy STARTED on every server")
        return {"agents": len(members), "first_agent_on_b_s": min(held),
                "last_agent_on_b_s": max(held),
                "leader_after_kill_s": leading, "deploy_started_after_kill_s": deployed}
    finally:
        agents.close()


# --- PostgreSQL restarted under calls ---------------------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


def private_postgres_missing() -> str | None:
    """Why a PostgreSQL of the bench's own cannot be run here (None: it can)."""
    if _pg_bin() is None:
        return "PostgreSQL's server programs are not installed (/usr/lib/postgresql)"
    if shutil.which("runuser") is None or not Path("/etc/passwd").read_text().count("postgres:"):
        return "no `postgres` user to run a private PostgreSQL as"
    return None


class PrivatePostgres:
    """A PostgreSQL server of the bench's own, so that it can be stopped and started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        bin_ = _pg_bin()
        assert bin_ is not None
        self.bin = bin_

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, timeout=60)

    def init(self) -> None:
        shutil.chown(self.directory, "postgres", "postgres")
        self._pg(str(self.bin / "initdb"), "-D", str(self.directory / "data"), "--auth=trust",
                 "-U", "postgres")
        self.start()

    def start(self) -> None:
        self._pg(str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-w", "-l",
                 str(self.directory / "log"), "-o",
                 f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._pg(str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-w", "-m",
                 "fast", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    base = Path(tempfile.mkdtemp(prefix="corral-bench-pg-"))
    base.chmod(0o755)
    server = PrivatePostgres(base)
    server.init()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


def database_restart(cp: ControlPlaneProcess, pg: PrivatePostgres) -> dict[str, Any]:
    """`GET /servers` every 100 ms while the control plane's PostgreSQL is stopped (fast) and
    started again: what each call answered, how long the slowest took, and how soon after the
    database accepted connections again calls were answered."""
    api = Api(cp)
    outcomes: list[tuple[float, float, str]] = []  # (sent, took, outcome)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                r = api.http.get("/hybrid/api/v1/servers", headers=api.headers, timeout=30)
                outcome = str(r.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            outcomes.append((sent, time.monotonic() - sent, outcome))
            stop.wait(max(0.0, 0.1 - (time.monotonic() - sent)))

    caller = threading.Thread(target=load, daemon=True)
    caller.start()
    try:
        until(lambda: len(outcomes) >= 10, 30, time.monotonic(), "calls answered first")
        stopped = time.monotonic()
        pg.stop()
        refused = until(lambda: outcomes[-1][2] == "503", 30, stopped, "a 503")
        time.sleep(2)
        pg.start()
        back = time.monotonic()
        recovered = until(lambda: outcomes[-1][0] > back and outcomes[-1][2] == "200", 30, back,
                          "a 200 after the restart")
        time.sleep(1)
    finally:
        stop.set()
        caller.join(60)
    took = [t for _, t, _ in outcomes]
    answers = Counter(o for _, _, o in outcomes)
    return {"calls": len(outcomes), **{f"answered_{o}": n for o, n in sorted(answers.items())},
            "first_503_after_stop_s": refused, "answered_200_after_start_s": recovered,
            "slowest_answer_s": round(max(took), 2),
            "p50_ms": round(1000 * percentile(took, 50), 1)}
