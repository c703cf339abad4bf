"""Several `corral serve` replicas on one PostgreSQL database, with real agents, a real
S3-compatible server and HAProxy in front: what must hold when a replica, the leader or the
database goes away (docs/high-availability.md)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import boto3
import httpx
import pytest
from sqlalchemy import create_engine, text

from corral import wire
from tests.conftest import S3_CREDENTIALS, _empty_postgres
from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import ADMIN_PASSWORD, Operator
from tests.e2e.processes import AgentProcess, ServeProcess, enroll, free_port, kill_processes_under
from tests.support import eventually, local_http, make_csr

MASTER_KEY = "the-replicas-master-key-for-these-tests-0123456789"
REPO = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = REPO / "docs" / "haproxy.cfg"

pytestmark = pytest.mark.slow


@dataclass
class Replicas:
    """N replicas on one database; agents register through `api` and are sent to the
    gateways in `order` (the first one first)."""

    base: Path
    database_url: str
    store: str
    env: dict[str, str] = field(default_factory=dict)
    procs: list[ServeProcess] = field(default_factory=list)
    agents: list[AgentProcess] = field(default_factory=list)

    def start(self, count: int, agents_on: int = 0, *, only: bool = False) -> None:
        """`only`: agents are told of replica `agents_on`'s gateway alone, so that they wait
        for it (a loaded machine may open its API before its gateway) instead of moving on."""
        self.procs = [ServeProcess(data_dir=self.base / f"replica{i}",
                                   database_url=self.database_url) for i in range(count)]
        urls = [f"wss://127.0.0.1:{p.gateway_port}" for p in self.procs]
        urls = urls[agents_on:agents_on + 1] if only else urls[agents_on:] + urls[:agents_on]
        for proc in self.procs:
            proc.env.update({
                "CORRAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "CORRAL_PASSWORD_HASH": "owasp",  # as tests/e2e/conftest.py says why
                "CORRAL_MASTER_KEY": MASTER_KEY,
                "CORRAL_ARTIFACT_STORE": self.store,
                "CORRAL_GATEWAY_URLS": json.dumps(urls),
                "CORRAL_REPLICA_URL": f"wss://127.0.0.1:{proc.gateway_port}",
                **self.env,
            })
            proc.start()

    def operator(self, index: int) -> Operator:
        return Operator(self.procs[index], ADMIN_PASSWORD)

    def agent(self, who: Operator, name: str) -> AgentProcess:
        agent = AgentProcess(self.base / "agents" / name)
        enroll(who.serve, who.registration_token(), name, agent.directory)
        agent.start()
        self.agents.append(agent)
        who.wait_server(agent.server_id, "RUNNING")
        return agent

    def stop(self) -> None:
        for agent in self.agents:
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait()
        kill_processes_under(self.base / "agents")
        for proc in self.procs:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop(signal.SIGKILL)


@pytest.fixture
def replicas(postgres_database: str, s3_endpoint: str, s3_store_url: str
             ) -> Iterator[Callable[..., Replicas]]:
    """A factory: `replicas(store="s3" | "database")`. The agents' folders sit under /tmp
    (reachable by `nobody`, who runs the applications)."""
    _empty_postgres(postgres_database)
    base = Path(tempfile.mkdtemp(prefix="corral-ha-"))
    base.chmod(0o711)
    made: list[Replicas] = []

    def make(store: str = "database", database_url: str | None = None) -> Replicas:
        env = {**S3_CREDENTIALS, "CORRAL_S3_ENDPOINT_URL": s3_endpoint}
        where = s3_store_url if store == "s3" else store
        fleet = Replicas(base, database_url or postgres_database, where, env)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.stop()
    shutil.rmtree(base, ignore_errors=True)


def _statuses(app: dict[str, Any]) -> dict[int, str]:
    return {i["serverId"]: i["lastReportedStatus"] for i in app["serverArtifacts"]}


def _version(agent: AgentProcess, name: str) -> str | None:
    """What the application answers; None while it is being replaced (a request can meet
    the old process as it ends)."""
    try:
        return str(ask(app_port(agent, name), settle=0)["version"])
    except (httpx.HTTPError, KeyError, ValueError, OSError):
        return None


def _replica_path_with(agent: AgentProcess, replica: ServeProcess) -> tuple[int | None, str]:
    """(close code, reason) when the agent's certificate asks for the replicas' log path."""
    import ssl

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    ctx = ssl.create_default_context(cafile=str(agent.directory / "ca.pem"))
    ctx.load_cert_chain(agent.directory / "server.pem", agent.directory / "server.key")
    url = f"wss://127.0.0.1:{replica.gateway_port}{wire.REPLICA_LOGS_PATH}"
    with connect(url, ssl=ctx, open_timeout=10) as ws:
        try:
            ws.send(json.dumps({"serverId": agent.server_id, "application": "far-app",
                                "lines": 10, "follow": False}))
            ws.recv(timeout=10)
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason or ""


def _log(proc: ServeProcess, needle: str) -> bool:
    return needle in proc.output()


# --- keys -------------------------------------------------------------------------------------


def test_replicas_share_one_ca_and_refuse_another_master_key(
        replicas: Callable[..., Replicas], tmp_path: Path) -> None:
    fleet = replicas()
    fleet.start(2)
    a, b = fleet.procs
    assert a.ca_path.read_bytes() == b.ca_path.read_bytes()
    assert not (a.data_dir / "pki" / "ca.key").exists()  # the key is in the database only
    engine = create_engine(fleet.database_url)
    with engine.connect() as conn:
        sealed = conn.execute(text("SELECT sealed FROM control_plane_secrets "
                                   "WHERE name = 'ca'")).scalar_one()
    engine.dispose()
    assert "PRIVATE KEY" not in sealed

    for env, says in (({"CORRAL_MASTER_KEY": "another-master-key-of-forty-characters-x"},
                       "does not open the ca key"),
                      ({"CORRAL_MASTER_KEY": ""}, "give this replica the same CORRAL_MASTER_KEY"),
                      ({"CORRAL_MASTER_KEY": "short"}, "at least 32 characters")):
        wrong = ServeProcess(data_dir=tmp_path / f"wrong-{len(env['CORRAL_MASTER_KEY'])}",
                             database_url=fleet.database_url)
        wrong.env.update({**a.env, **env})
        if not env["CORRAL_MASTER_KEY"]:
            del wrong.env["CORRAL_MASTER_KEY"]
        with pytest.raises(RuntimeError, match="exited early"):
            wrong.start()
        assert wrong.proc is not None and wrong.proc.returncode == 2
        assert says in wrong.output(), wrong.output()
        assert "Traceback" not in wrong.output()


# --- propagation, logs, artifacts -------------------------------------------------------------


def test_a_deploy_through_one_replica_runs_on_an_agent_of_another(
        replicas: Callable[..., Replicas]) -> None:
    """Agents sit on replica B; every call goes to replica A. The change reaches B's agent by
    NOTIFY, the artifact comes from the shared S3 store, and A reads the log through B."""
    fleet = replicas(store="s3")
    fleet.start(2, agents_on=1, only=True)
    a = fleet.operator(0)
    agent = fleet.agent(a, "far")
    assert _log(fleet.procs[1], f"server {agent.server_id} connected")

    started = time.monotonic()
    app = a.deploy("far-app", agent.server_id, app_zip("v1"))
    a.wait_app(app["id"], "STARTED")
    print(f"deploy through A to STARTED on B's agent: {time.monotonic() - started:.2f} s")
    assert ask(app_port(agent, "far-app"))["version"] == "v1"
    assert not list((fleet.procs[0].data_dir / "artifacts").rglob("*"))  # nothing local

    lines = eventually(lambda: a.call("GET", f"/applications/{app['id']}/logs",
                                      expect=200).json()["data"],
                       lambda found: any("listening on" in line for line in found),
                       what="the log read through replica A")
    assert lines
    # only a replica may ask a gateway for logs: the agent's own certificate is refused there
    refused = _replica_path_with(agent, fleet.procs[1])
    assert refused[0] == wire.CLOSE_UNKNOWN_SERVER and "control-plane replica" in refused[1]

    # a token signed out through B is refused by A on the very next call, though A had just
    # accepted it (and cached it): B's commit told A
    b = fleet.operator(1)
    b.call("GET", "/servers", expect=200)
    watcher = fleet.operator(0)
    watcher.headers["Authorization"] = b.headers["Authorization"]
    watcher.call("GET", "/servers", expect=200)
    assert b.http.post("/accounts/api/logout", headers=b.headers).status_code == 204
    watcher.call("GET", "/servers", expect=401)

    # the agent on B hears of a change made on A at once (not at the next 5-s sweep): a stop
    started = time.monotonic()
    a.call("PATCH", f"/applications/{app['id']}", expect=200, json={"desiredStatus": "STOPPED"})
    a.wait_app(app["id"], "STOPPED", timeout=4)
    print(f"stop through A reported STOPPED from B's agent: {time.monotonic() - started:.2f} s")

    # what B keeps of its answers gives way to a change made through A once A's notice
    # arrives: every kind of kept answer (a group and a cluster of servers with no agent
    # beside the agent's own), read twice on B (the second one kept), then changed through A
    token = a.registration_token()
    spare = [a.http.post("/hybrid/api/v1/servers", headers={"Authorization": f"Bearer {token}"},
                         json={"muleLabel": f"spare{i}", "signatureRequest": make_csr()}
                         ).json()["serverId"] for i in range(2)]
    gid = a.call("POST", "/serverGroups", json={"name": "g", "serverIds": [spare[0]]}
                 ).json()["data"]["id"]
    cid = a.call("POST", "/clusters", expect=201, json={"name": "c", "servers": [
        {"serverId": spare[1], "serverIp": "10.0.0.9"}]}).json()["data"]["id"]

    def named(name: str) -> Callable[[Any], bool]:
        return lambda d: name in {x["name"] for x in (d if isinstance(d, list) else [d])}

    def app_started(d: Any) -> bool:
        return {x["desiredStatus"] for x in (d if isinstance(d, list) else [d])} == {"STARTED"}

    reads: dict[str, Callable[[Any], bool]] = {
        f"/applications/{app['id']}": app_started, "/applications": app_started,
        f"/servers/{agent.server_id}": named("renamed"), "/servers": named("renamed"),
        f"/serverGroups/{gid}": named("g2"), "/serverGroups": named("g2"),
        f"/clusters/{cid}": named("c2"), "/clusters": named("c2"),
        "armui:/servers": named("c2"), "armui:/applications": app_started,
    }
    reader = fleet.operator(1)  # `b` signed out above

    def read(path: str) -> Any:
        if path.startswith("armui:"):
            r = reader.http.get(f"/armui/api/v1{path.removeprefix('armui:')}",
                                headers=reader.headers)
            assert r.status_code == 200, r.text
            return r.json()["data"]
        return reader.data(path)

    before = _kept(reader)
    for path in reads:
        read(path)
        read(path)  # kept, unless the agent's report moved B's count in between
    assert _kept(reader) > before
    a.call("PATCH", f"/servers/{agent.server_id}", expect=200, json={"name": "renamed"})
    a.call("PATCH", f"/serverGroups/{gid}", expect=200, json={"name": "g2"})
    a.call("PATCH", f"/clusters/{cid}", expect=200, json={"name": "c2"})
    a.call("PATCH", f"/applications/{app['id']}", expect=200,
           json={"desiredStatus": "STARTED"})
    changed = time.monotonic()
    for path, shown in reads.items():
        eventually(functools.partial(read, path), shown, timeout=5,
                   what=f"B's answer to {path} after the changes through A")
    print(f"the changes through A in every answer B keeps: {time.monotonic() - changed:.3f} s")


def _kept(operator: Operator) -> float:
    """`corral_answers_total{outcome="kept"}` of that operator's replica."""
    text = operator.http.get("/metrics", headers=operator.headers).text
    for line in text.splitlines():
        if line.startswith('corral_answers_total{outcome="kept"}'):
            return float(line.split()[-1])
    return 0.0


# --- faults -----------------------------------------------------------------------------------


def test_kill_9_of_the_replica_holding_the_agents_during_a_group_deploy(
        replicas: Callable[..., Replicas]) -> None:
    fleet = replicas(store="database")
    fleet.start(3, agents_on=1)
    a = fleet.operator(0)
    members = [fleet.agent(a, f"member{i}") for i in range(3)]
    ids = [m.server_id for m in members]
    group = a.call("POST", "/serverGroups", expect=201,
                   json={"name": "trio", "serverIds": ids}).json()["data"]
    first = a.deploy("steady", group["id"], app_zip("v1"))
    a.wait_app(first["id"], "STARTED")
    pids = {m.server_id: m.app_pids("steady") for m in members}

    second = a.deploy("during", group["id"], app_zip("v2"))
    fleet.procs[1].stop(signal.SIGKILL)  # the replica every agent is connected to
    killed = time.monotonic()
    survivors = (fleet.procs[0], fleet.procs[2])
    for sid in ids:
        eventually(lambda sid=sid: any(_log(p, f"server {sid} connected") for p in survivors),
                   timeout=15, what=f"server {sid} connected to a surviving replica")
        a.wait_server(sid, "RUNNING", timeout=1)
    print(f"agents RUNNING on another replica {time.monotonic() - killed:.1f} s after kill -9")

    try:
        done = a.wait_app(second["id"], "STARTED", timeout=60)
    except AssertionError:  # what each side saw, for the post-mortem
        print(json.dumps(_statuses(a.data(f"/applications/{second['id']}"))))
        for m in members:
            print(f"--- {m.directory.name}\n" + "\n".join(m.output().splitlines()[-15:]))
        for p in survivors:
            print(f"--- replica {p.port}\n" + "\n".join(
                line for line in p.output().splitlines()[-400:] if "HTTP/1.1" not in line))
        raise
    assert sorted(_statuses(done)) == sorted(ids)  # one instance per member, none half-made
    assert set(_statuses(done).values()) == {"STARTED"}
    for m in members:
        assert ask(app_port(m, "during"))["version"] == "v2"
        assert m.app_pids("steady") == pids[m.server_id]  # never restarted
        assert m.app_copies("during") == 1
    assert set(_statuses(a.data(f"/applications/{first['id']}")).values()) == {"STARTED"}


def test_kill_9_of_a_replica_in_the_middle_of_an_upload(
        replicas: Callable[..., Replicas], s3_endpoint: str) -> None:
    fleet = replicas(store="s3")
    fleet.start(2)
    a, b = fleet.operator(0), fleet.operator(1)
    agent = fleet.agent(b, "target")
    big = _padded_zip(24 * 1024 * 1024)
    sent = threading.Event()

    def body() -> Iterator[bytes]:
        boundary = b"--corral-ha\r\n"
        yield boundary + b'Content-Disposition: form-data; name="artifactName"\r\n\r\nhalf\r\n'
        yield boundary + (f'Content-Disposition: form-data; name="targetId"\r\n\r\n'
                          f"{agent.server_id}\r\n").encode()
        yield boundary + (b'Content-Disposition: form-data; name="file"; filename="half.zip"\r\n'
                          b"Content-Type: application/zip\r\n\r\n")
        for start in range(0, len(big), 1024 * 1024):
            yield big[start : start + 1024 * 1024]
            if start >= 8 * 1024 * 1024:
                sent.set()
                time.sleep(0.2)
        yield b"\r\n--corral-ha--\r\n"

    killer = threading.Thread(target=lambda: (sent.wait(30),
                                              fleet.procs[0].stop(signal.SIGKILL)))
    killer.start()
    with pytest.raises(httpx.HTTPError):
        r = a.http.post("/hybrid/api/v1/applications", content=body(), headers={
            **a.headers, "Content-Type": "multipart/form-data; boundary=corral-ha"})
        pytest.fail(f"the upload to a killed replica answered {r.status_code}")
    killer.join()

    assert b.data("/applications") == []  # nothing half-written is visible
    bucket = fleet.store.removeprefix("s3://").split("/", 1)[0]
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)
    assert listed.get("KeyCount", 0) == 0

    retried = b.deploy("half", agent.server_id, big)  # the client's retry, elsewhere
    b.wait_app(retried["id"], "STARTED")
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)
    assert listed.get("KeyCount", 0) == 1


def _padded_zip(size: int) -> bytes:
    """A valid application bundle of about `size` bytes (incompressible padding)."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("Procfile", "web: python3 -c 'import time; time.sleep(3600)'\n")
        z.writestr("padding.bin", os.urandom(size))
    return buf.getvalue()


def test_the_leader_killed_another_takes_the_singleton_work(
        replicas: Callable[..., Replicas]) -> None:
    """Replica A leads (it started first). An agent held by A dies with it: only a leader
    marks a silent server DISCONNECTED, so B must take the lead for that to happen."""
    fleet = replicas()
    fleet.env.update({"CORRAL_HEARTBEAT_SECONDS": "10", "CORRAL_HEARTBEAT_TIMEOUT_SECONDS": "15"})
    fleet.start(2)
    a, b = fleet.procs
    eventually(lambda: _log(a, "now does the singleton work"), what="A leading")
    assert not _log(b, "now does the singleton work")
    watcher = fleet.operator(1)
    agent = fleet.agent(watcher, "lonely")
    assert agent.proc is not None
    agent.proc.kill()
    a.stop(signal.SIGKILL)
    killed = time.monotonic()
    eventually(lambda: _log(b, "now does the singleton work"), timeout=15, what="B leading")
    print(f"B leads {time.monotonic() - killed:.1f} s after the leader's kill -9")
    watcher.wait_server(agent.server_id, "DISCONNECTED", timeout=40)


# --- the database restarted -------------------------------------------------------------------


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of this test's own, so that it can be restarted."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, timeout=60)

    def init(self) -> None:
        self.directory.mkdir(parents=True)
        shutil.chown(self.directory, "postgres", "postgres")
        self._pg(str(_pg_bin() / "initdb"), "-D", str(self.directory / "data"),
                 "--auth=trust", "-U", "postgres")
        self.start()

    def start(self) -> None:
        self._pg(str(_pg_bin() / "pg_ctl"), "-D", str(self.directory / "data"), "-w",
                 "-l", str(self.directory / "log"), "-o",
                 f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._pg(str(_pg_bin() / "pg_ctl"), "-D", str(self.directory / "data"), "-w",
                 "-m", "fast", "stop")


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.skip("PostgreSQL's server programs are not installed (/usr/lib/postgresql)")
    return found[-1].parent


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="corral-pg-"))
    base.chmod(0o755)
    server = PrivatePostgres(base / "pg")
    server.init()
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):
        server.stop()
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Load:
    """One call every `every` seconds until stopped: what each answered."""

    call: Callable[[], httpx.Response]
    every: float
    outcomes: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                r = self.call()
                outcome = str(r.status_code)
                if r.status_code >= 400:  # Corral's message; HAProxy's refusals are HTML
                    try:
                        outcome += " " + r.json().get("message", "")
                    except ValueError:
                        outcome += " " + r.text[:200]
            except httpx.HTTPError as exc:
                outcome = f"error {type(exc).__name__}"
            self.outcomes.append((time.monotonic() - began, outcome))
            self._stop.wait(max(0.0, self.every - (time.monotonic() - began)))

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_postgresql_restarted_under_load(replicas: Callable[..., Replicas],
                                         private_postgres: PrivatePostgres) -> None:
    fleet = replicas(database_url=private_postgres.url)
    fleet.start(2)
    a = fleet.operator(0)
    agent = fleet.agent(a, "calm")
    app = a.deploy("calm-app", agent.server_id, app_zip("v1"))
    a.wait_app(app["id"], "STARTED")
    pids = agent.app_pids("calm-app")

    with Load(lambda: a.http.get("/hybrid/api/v1/servers", headers=a.headers, timeout=15),
              every=0.1) as load:
        eventually(lambda: load.outcomes, lambda o: len(o) >= 5, what="calls answered first")
        private_postgres.stop()
        eventually(lambda: load.outcomes[-1][1], lambda o: o.startswith("503"), timeout=30,
                   what="a call answered 503 while the database is down")
        private_postgres.start()
        eventually(lambda: load.outcomes[-1][1], lambda o: o == "200", timeout=30,
                   what="calls answered again after the restart")
    kinds = {outcome for _, outcome in load.outcomes}
    print(f"{len(load.outcomes)} calls during the restart: "
          f"{ {k: sum(1 for _, o in load.outcomes if o == k) for k in kinds} }")
    assert any(o.startswith("503 the database is unavailable") for o in kinds), kinds
    assert kinds <= {"200", "503 the database is unavailable; retry later"}, kinds
    # every call was answered: a hung one would be a timeout, not one of the kinds above
    print(f"the slowest answer took {max(took for took, _ in load.outcomes):.1f} s")
    assert agent.app_pids("calm-app") == pids  # the application was not touched
    assert agent.output().count("connected to wss://") == 1  # nor was its agent's connection

    # recovered without a restart: a change goes through and reaches the agent
    a.wait_server(agent.server_id, "RUNNING")
    a.call("PATCH", f"/applications/{app['id']}", expect=200,
           files={"file": ("calm-2.zip", app_zip("v2"), "application/zip")})
    eventually(lambda: _version(agent, "calm-app"), lambda v: v == "v2",
               what="v2 deployed after the restart")
    assert agent.proc is not None and agent.proc.poll() is None
    assert pids and agent.app_pids("calm-app") != pids  # redeployed, so replaced, once
    assert agent.app_copies("calm-app") == 1


# --- a rolling restart behind HAProxy ---------------------------------------------------------


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[[list[ServeProcess]], str]]:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("HAProxy is not installed (Debian package haproxy; .ci/run installs it)")
    procs: list[subprocess.Popen[bytes]] = []
    # a second file beside the documented one: HAProxy's own view of its servers, for the tests
    stats = tmp_path / "haproxy.sock"
    extra = tmp_path / "stats.cfg"
    extra.write_text(f"global\n    stats socket {stats} mode 600 level admin\n")

    def start(backends: list[ServeProcess]) -> str:
        port = free_port()
        env = {**os.environ, "CORRAL_LB_BIND": f"127.0.0.1:{port}"}
        for i in range(3):
            target = backends[i % len(backends)]
            env[f"CORRAL_REPLICA{i + 1}"] = f"127.0.0.1:{target.port}"
        log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115 - handed to the child
        procs.append(subprocess.Popen([binary, "-db", "-f", str(HAPROXY_CONFIG), "-f",
                                       str(extra)], env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
        log.close()
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(url + "/healthz"), what="HAProxy up")
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def haproxy_up(stats: Path) -> set[str]:
    """The servers HAProxy counts as up now (`show stat` on its stats socket)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    rows = [line.split(",") for line in answer.decode().splitlines() if line and line[0] != "#"]
    return {row[1] for row in rows if len(row) > 17 and row[17] == "UP"
            and row[1] not in ("FRONTEND", "BACKEND")}


def _answers(url: str) -> bool:
    try:
        return local_http().get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_rolling_restart_behind_haproxy_fails_no_call(
        replicas: Callable[..., Replicas], haproxy: Callable[[list[ServeProcess]], str],
        tmp_path: Path) -> None:
    fleet = replicas()
    fleet.start(3)
    lb = haproxy(fleet.procs)
    stats = tmp_path / "haproxy.sock"
    a = fleet.operator(0)
    agent = fleet.agent(a, "steady")
    app = a.deploy("steady-app", agent.server_id, app_zip("v1"))
    a.wait_app(app["id"], "STARTED")
    pids = agent.app_pids("steady-app")

    client = httpx.Client(base_url=lb, headers=a.headers, timeout=15)
    with Load(lambda: client.get("/hybrid/api/v1/applications"), every=0.05) as load:
        for proc in fleet.procs:
            calls = len(load.outcomes)
            proc.stop(signal.SIGTERM)
            proc.start()
            eventually(lambda: haproxy_up(stats),  # back in before the next one stops
                       lambda up: up == {"replica1", "replica2", "replica3"}, timeout=30,
                       what="HAProxy counting every replica up again")
            eventually(lambda calls=calls: len(load.outcomes) - calls, lambda n: n >= 5,
                       what="calls answered across this replica's restart")
    client.close()
    failed = [o for o in load.outcomes if o[1] != "200"]
    print(f"rolling restart of 3 replicas: {len(load.outcomes)} calls, {len(failed)} failed "
          f"{failed[:5]}")
    assert failed == []
    a = fleet.operator(0)
    a.wait_server(agent.server_id, "RUNNING")
    assert agent.app_pids("steady-app") == pids


def test_a_ca_rotation_through_one_replica_reaches_agents_of_another(
        replicas: Callable[..., Replicas], tmp_path: Path) -> None:
    """Rotate through A while the agents sit on B: B signs their renewals with the new CA at
    once; retire through B and A refuses the old CA's certificates too."""
    from tests.e2e.test_certificates import Credentials, gateway_answer

    fleet = replicas()
    fleet.env["CORRAL_CA_ROTATION_SPREAD_SECONDS"] = "2"
    fleet.start(2, agents_on=1)
    a, b = fleet.operator(0), fleet.operator(1)
    agents = [fleet.agent(a, f"ca{i}") for i in range(2)]
    old = Credentials(agents[0], tmp_path / "old")
    rotated = a.call("POST", "/certificateAuthority/rotate", expect=201).json()["data"]
    eventually(lambda: b.data("/certificateAuthority"),
               lambda s: s["signer"]["fingerprint"] == rotated["signer"]["fingerprint"]
               and s["serversOnOldCa"] == 0, timeout=60,
               what="replica B following the rotation and its agents moving")
    for agent in agents:
        assert b.data(f"/servers/{agent.server_id}")["status"] == "RUNNING"
        assert _log(fleet.procs[1], f"server {agent.server_id}: certificate renewed")
    both = tmp_path / "both.pem"  # the agents' bundle: either gateway certificate passes
    shutil.copy(agents[1].directory / "ca.pem", both)
    b.call("POST", "/certificateAuthority/retire", expect=200)
    answer = eventually(lambda: gateway_answer(fleet.procs[0], old, trust=both),
                        lambda found: found.startswith(f"closed {wire.CLOSE_UNKNOWN_SERVER}"),
                        timeout=20, what="replica A refusing the retired CA")
    assert "trusts" in answer
    assert a.data("/certificateAuthority")["rotating"] is False
