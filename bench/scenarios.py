"""The four scenarios of docs/performance.md. Each returns plain figures (dicts)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    Api,
    ControlPlaneProcess,
    Simulators,
    connect_once,
    free_port,
    percentile,
    register_fleet,
)


def small_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", "web: python3 -m http.server $PORT\n")
    return buf.getvalue()


# --- 1 + 2: agents held, then fan-out on the same fleet ---------------------------------------


def fleet(cp: ControlPlaneProcess, workdir: Path, sizes: list[int], fanouts: list[int],
          processes: int = 2, settle_s: float = 12, cpu_window_s: float = 20) -> dict[str, Any]:
    """`settle_s`: how long a held fleet runs before it is measured (12 s: past the gateway's
    first vouching for everyone); `cpu_window_s`: how long its CPU use is measured."""
    api = Api(cp)
    n_max = max([*sizes, *fanouts])
    timing: dict[str, float] = {}
    identities = register_fleet(cp, api, n_max, workdir / "certs", timing=timing)
    registration = timing["registration_s"]
    held: list[dict[str, Any]] = []
    sims: list[Simulators] = []
    connected = 0
    for n in sorted(sizes):
        t0 = time.monotonic()
        sims.append(Simulators(cp, identities[connected:n], workdir, processes))
        connected = n
        ok = sims[0].wait(lambda n=n: sum(s.total_synced() for s in sims) >= n, timeout=900)
        connect_time = time.monotonic() - t0
        if not ok:
            held.append({"agents": n, "error": "not all agents connected within 900 s"})
            break
        time.sleep(settle_s)
        held.append({"agents": n, "connect_s": round(connect_time, 2),
                     "rss_mb": round(cp.rss_mb(), 1),
                     "cpu_percent_steady": round(cp.cpu_percent(cpu_window_s), 1)})
    # restart the control plane: how long until every agent is RUNNING (holds its state) again
    restart: dict[str, Any] = {}
    if held and "error" not in held[-1]:
        total = lambda: sum(s.total_synced() for s in sims)  # noqa: E731
        cp.stop()
        sims[0].wait(lambda: total() == 0, timeout=60)
        t0 = time.monotonic()
        cp.start()
        ok = sims[0].wait(lambda: total() >= connected, timeout=900)
        restart = {"agents": connected, "all_running_after_restart_s":
                   round(time.monotonic() - t0, 2) if ok else None}
        api.login()
    fan = [fanout(api, sims, identities, n) for n in sorted(fanouts) if n <= connected]
    for s in sims:
        s.stop()
    return {"registration_s": round(registration, 1), "registered": n_max,
            "registrations_per_s": round(n_max / registration, 1), "held": held,
            "restart": restart, "fanout": fan}


def _timed(sims: list[Simulators], app: str, deployment: int, status: str, n: int,
           t0: float, timeout: float = 600) -> dict[str, Any]:
    """Seconds from the moment the request was sent until each agent had its instance."""
    def answers() -> list[float]:
        return [t for s in sims for t in s.answers(app, deployment, status)]

    ok = sims[0].wait(lambda: len(answers()) >= n, timeout)
    times = [max(0.0, t - t0) for t in answers()]
    return {"servers": n, "complete": ok, "p50_s": round(percentile(times, 50), 3),
            "p99_s": round(percentile(times, 99), 3), "all_s": round(max(times, default=0), 3),
            "placements_per_s": round(n / max(max(times, default=0), 1e-3))}


def _api_status(api: Api, app_id: int, want: str, t0: float, timeout: float = 600) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.call("GET", f"/applications/{app_id}")["lastReportedStatus"] == want:
            return round(time.time() - t0, 3)
        time.sleep(0.2)
    return None


def fanout(api: Api, sims: list[Simulators], identities: list[dict[str, str]], n: int) -> dict[str, Any]:
    ids = [int(i["id"]) for i in identities[:n]]
    group = api.call("POST", "/serverGroups", json={"name": f"fan-{n}", "serverIds": ids})
    name = f"fan{n}"
    out: dict[str, Any] = {"group_size": n}
    t0 = time.time()
    app = api.client.apps.deploy(name, group["id"], (f"{name}.zip", small_zip()))
    out["post_answer_s"] = round(time.time() - t0, 3)
    out["deploy"] = _timed(sims, name, 1, "STARTED", n, t0)
    out["deploy"]["api_started_s"] = _api_status(api, app["id"], "STARTED", t0)
    t0 = time.time()
    api.call("PATCH", f"/applications/{app['id']}", json={"desiredStatus": "STOPPED"})
    out["stop"] = _timed(sims, name, 1, "STOPPED", n, t0)
    out["stop"]["api_stopped_s"] = _api_status(api, app["id"], "STOPPED", t0)
    api.call("PATCH", f"/applications/{app['id']}", json={"desiredStatus": "STARTED"})
    _api_status(api, app["id"], "STARTED", time.time())
    t0 = time.time()
    api.call("PATCH", f"/applications/{app['id']}", files={"id": (None, str(app["id"]))})
    out["redeploy"] = _timed(sims, name, 2, "STARTED", n, t0)
    out["redeploy"]["api_started_s"] = _api_status(api, app["id"], "STARTED", t0)
    api.call("DELETE", f"/applications/{app['id']}")
    api.call("DELETE", f"/serverGroups/{group['id']}")
    return out


# --- 3: API latency -----------------------------------------------------------------------------


def api_latency(cp: ControlPlaneProcess, workdir: Path, servers: int, apps: int,
                clients: int = 16, seconds: float = 5.0, fleet: int = 0,
                one_process: bool = True) -> dict[str, Any]:
    """Registration and deploy rates, then each endpoint under `clients` concurrent clients for
    `seconds`, beside a bare Starlette endpoint served in the same run (`bench/bare.py`). Each
    server is in a group of its own and the applications are deployed to the groups; ten
    two-server clusters stand beside them (fewer on a small plan). `kept` is the share of calls
    served from kept answers (`corral_answers_total`). With a `fleet`, that many agents in all
    (the rest as servers of the Sandbox environment) stay connected through the calls, each
    sending what a real agent measures and answering every change. Not `one_process` (replicas
    behind a balancer): `kept` is not counted (each `/metrics` is one replica's)."""
    api = Api(cp)
    timing: dict[str, float] = {}
    clusters = max(1, min(10, servers // 100))  # of two servers each
    identities = register_fleet(cp, api, servers + 2 * clusters, workdir / "api-certs",
                                timing=timing)
    others: list[dict[str, str]] = []
    if fleet > len(identities):
        sandbox = Api(cp)
        sandbox.client.use_environment("Sandbox")
        others = register_fleet(cp, sandbox, fleet - len(identities), workdir / "fleet-certs")
    connect_once(cp, identities, workdir)
    server_ids = [int(i["id"]) for i in identities[:servers]]
    groups = api.client.groups
    group_ids = [int(groups.create(f"g{i:05d}", [sid])["id"]) for i, sid in enumerate(server_ids)]
    paired = [int(i["id"]) for i in identities[servers:]]
    cluster_ids = [int(api.client.clusters.create(
        f"c{i}", False, [(sid, f"10.0.{i}.{n + 1}")
                         for n, sid in enumerate(paired[2 * i:2 * i + 2])])["id"])
        for i in range(clusters)]
    archive = small_zip()
    t0 = time.monotonic()

    async def deploy_all() -> list[int]:
        gate = asyncio.Semaphore(clients)
        async with httpx.AsyncClient(base_url=cp.url, timeout=120, headers=api.headers) as c:
            async def one(i: int) -> int:
                async with gate:
                    r = await c.post("/hybrid/api/v1/applications",
                                     data={"artifactName": f"app{i}",
                                           "targetId": group_ids[i % servers]},
                                     files={"file": ("a.zip", archive, "application/zip")})
                r.raise_for_status()
                return int(r.json()["data"]["id"])
            return list(await asyncio.gather(*[one(i) for i in range(apps)]))

    app_ids = asyncio.run(deploy_all())
    setup = time.monotonic() - t0
    bare = BareServer(workdir)
    hybrid = "/hybrid/api/v1"

    def one_of(kind: str, ids: list[int]) -> Any:
        return lambda: (f"{hybrid}/{kind}/{random.choice(ids)}", {})

    def page(kind: str, n: int) -> Any:
        return lambda: (f"{hybrid}/{kind}", {"params": {"limit": 100,
                                                        "offset": random.randrange(n)}})

    endpoints: list[tuple[str, str, str, Any]] = [
        ("bare Starlette GET /things/{id}", bare.url, "GET",
         lambda: (f"/things/{random.randrange(servers)}", {})),
        ("GET /servers/{id}", cp.url, "GET", one_of("servers", server_ids)),
        ("GET /serverGroups/{id}", cp.url, "GET", one_of("serverGroups", group_ids)),
        ("GET /clusters/{id}", cp.url, "GET", one_of("clusters", cluster_ids)),
        ("GET /applications/{id}", cp.url, "GET", one_of("applications", app_ids)),
        ("PATCH /applications/{id} desiredStatus", cp.url, "PATCH",
         lambda: (f"{hybrid}/applications/{random.choice(app_ids)}",
                  {"json": {"desiredStatus": random.choice(["STARTED", "STOPPED"])}})),
        ("GET /servers?limit=100", cp.url, "GET", page("servers", servers)),
        ("GET /applications?limit=100", cp.url, "GET", page("applications", apps)),
        (f"GET /servers (all {len(identities)})", cp.url, "GET",
         lambda: (f"{hybrid}/servers", {})),
        (f"GET /applications (all {apps})", cp.url, "GET",
         lambda: (f"{hybrid}/applications", {})),
        ("GET /armui/api/v1/servers", cp.url, "GET", lambda: ("/armui/api/v1/servers", {})),
        ("GET /armui/api/v1/applications", cp.url, "GET",
         lambda: ("/armui/api/v1/applications", {})),
    ]
    results = []
    held: Simulators | None = None
    try:
        if fleet:
            held = Simulators(cp, identities + others, workdir, measure=True)
            if not held.wait(lambda: held.total_synced() >= len(identities) + len(others),
                             timeout=600):
                raise RuntimeError("the fleet did not connect within 600 s")
        for label, base, method, make in endpoints:
            before = _answers(api)
            lat = asyncio.run(_load(base, api.headers, method, make, seconds, clients))
            kept, rendered = (a - b for a, b in zip(_answers(api), before, strict=True))
            results.append({"endpoint": label, "requests": len(lat["ms"]),
                            "p50_ms": round(percentile(lat["ms"], 50), 1),
                            "p99_ms": round(percentile(lat["ms"], 99), 1),
                            "rps": round(lat["rps"], 1), "errors": lat["errors"],
                            "kept": round(kept / (kept + rendered), 2)
                            if one_process and base == cp.url and kept + rendered else None})
    finally:
        bare.stop()
        if held is not None:
            held.stop()
    bare_rps = results[0]["rps"] or 1
    for r in results:
        r["throughput_vs_bare"] = round(r["rps"] / bare_rps, 2)
    return {"servers": servers, "groups": len(group_ids), "clusters": len(cluster_ids),
            "agents_connected": len(identities) + len(others) if fleet else 0,
            "applications": apps, "clients": clients, "seconds_per_endpoint": seconds,
            "registrations_per_s": round(len(identities) / timing["registration_s"], 1),
            "applications_created_per_s": round(apps / setup, 1),
            "setup_s": round(setup, 1), "endpoints": results}


def _answers(api: Api) -> tuple[float, float]:
    """This control plane's `corral_answers_total`: (kept, rendered)."""
    found = {"kept": 0.0, "rendered": 0.0}
    for line in api.http.get("/metrics", headers=api.headers).text.splitlines():
        if line.startswith("corral_answers_total{"):
            outcome = line.split('"')[1]
            found[outcome] = float(line.rsplit(" ", 1)[1])
    return found["kept"], found["rendered"]


class BareServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with open(workdir / "bare.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.bare", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/things/1", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the bare Starlette server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def _load(base: str, headers: dict[str, str], method: str, make: Any, seconds: float,
                clients: int) -> dict[str, Any]:
    """`clients` callers, each sending its next request as soon as its last is answered, for
    `seconds`."""
    latencies: list[float] = []
    errors = 0

    async def worker(c: httpx.AsyncClient, until: float) -> None:
        nonlocal errors
        while time.perf_counter() < until:
            path, kw = make()
            t0 = time.perf_counter()
            r = await c.request(method, path, **kw)
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += r.status_code >= 400

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(c, t0 + seconds) for _ in range(clients)])
        elapsed = time.perf_counter() - t0
    return {"ms": latencies, "rps": len(latencies) / elapsed, "errors": errors}


# --- 4: artifacts ---------------------------------------------------------------------------------


def artifacts(cp: ControlPlaneProcess, workdir: Path, size_mb: int) -> dict[str, Any]:
    api = Api(cp)
    [server] = register_fleet(cp, api, 1, workdir / "artifact-certs")
    connect_once(cp, [server], workdir)
    path = workdir / f"artifact-{size_mb}mb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        with z.open("blob.bin", "w", force_zip64=True) as member:
            for _ in range(size_mb):
                member.write(os.urandom(1024 * 1024))
        z.writestr("Procfile", "web: true\n")
    size = path.stat().st_size
    peak = {"rss": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], cp.rss_mb())
            time.sleep(0.01)

    def measured(action: Any) -> tuple[float, float]:
        base = cp.rss_mb()
        peak["rss"] = base
        stop.clear()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        action()
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join()
        return elapsed, peak["rss"] - base

    app: dict[str, Any] = {}

    def upload() -> None:
        with open(path, "rb") as f:
            app.update(api.client.apps.deploy("big", int(server["id"]), ("big.zip", f)))

    def download() -> None:
        with api.http.stream("GET", f"/hybrid/api/v1/applications/{app['id']}/artifact",
                             headers=api.headers) as r:
            for _ in r.iter_bytes(1024 * 1024):
                pass

    up_s, up_rss = measured(upload)
    down_s, down_rss = measured(download)
    path.unlink()
    mb = size / 1e6
    return {"size_mb": round(mb, 1),
            "upload": {"seconds": round(up_s, 2), "mb_per_s": round(mb / up_s, 1),
                       "rss_growth_mb": round(up_rss, 1)},
            "download": {"seconds": round(down_s, 2), "mb_per_s": round(mb / down_s, 1),
                         "rss_growth_mb": round(down_rss, 1)}}


# --- 5: hardening: a login flood beside reads, guessing costs, a hostile body ------------------


def _p50_read(http: httpx.Client, headers: dict[str, str], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = http.get("/hybrid/api/v1/servers", params={"limit": 1}, headers=headers)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    return percentile(times, 50)


def _flood(url: str, clients: int, stop: threading.Event, counts: dict[int, int]) -> None:
    def attacker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            n = 0
            while not stop.is_set():
                name = "admin" if n % 2 else f"ghost-{i}-{n}"
                r = http.post("/accounts/login", json={"username": name, "password": f"bad-{n}"})
                counts[r.status_code] = counts.get(r.status_code, 0) + 1
                n += 1

    threads = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()


def login_flood(cp: ControlPlaneProcess, reads: int = 300, clients: int = 3) -> dict[str, Any]:
    """p50 of `GET /servers?limit=1` idle and while `clients` send wrong passwords as fast as
    they can (with the throttle as configured), and the ratio of the two."""
    api = Api(cp)
    http = httpx.Client(base_url=cp.url, timeout=60)
    _p50_read(http, api.headers, 30)  # warm up
    idle = _p50_read(http, api.headers, reads)
    stop = threading.Event()
    counts: dict[int, int] = {}
    _flood(cp.url, clients, stop, counts)
    # the flood is under way (past the throttle's free failures, where there is a throttle)
    # before the reads are measured, however slow the machine
    deadline = time.monotonic() + 60
    while sum(counts.values()) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    flooded = _p50_read(http, api.headers, reads)
    stop.set()
    time.sleep(0.5)
    return {"idle_p50_ms": round(idle * 1000, 2), "flood_p50_ms": round(flooded * 1000, 2),
            "ratio": round(flooded / idle, 2), "attacker_clients": clients,
            "attempts": dict(sorted(counts.items()))}


def guess_timing(cp: ControlPlaneProcess, tries: int = 20) -> dict[str, Any]:
    """Mean time of a failed sign-in for an existing name and for an unknown one."""
    http = httpx.Client(base_url=cp.url, timeout=60)

    def mean(name: str) -> float:
        times = []
        for i in range(tries):
            t0 = time.perf_counter()
            r = http.post("/accounts/login", json={"username": name, "password": f"no-{i}"})
            times.append(time.perf_counter() - t0)
            assert r.status_code == 401, r.text
        return sum(times) / len(times)

    known, unknown = mean("admin"), mean("nobody-by-this-name")
    return {"known_name_ms": round(known * 1000, 1), "unknown_name_ms": round(unknown * 1000, 1)}


def hostile_body(cp: ControlPlaneProcess, mib: int = 300) -> dict[str, Any]:
    """RSS of the control plane before and after a `mib` MiB body to /accounts/login."""
    import socket

    before = cp.rss_mb()
    sock = socket.create_connection(("127.0.0.1", cp.port), timeout=30)
    sock.sendall(b"POST /accounts/login HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    block = b"x" * (1024 * 1024)
    status = b""
    with contextlib.suppress(OSError):  # refused early: the server closed the connection
        for _ in range(mib):
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
    with contextlib.suppress(OSError):
        status = sock.recv(100).split(b"\r\n", 1)[0]
    sock.close()
    time.sleep(0.5)
    return {"body_mib": mib, "answer": status.decode(errors="replace"),
            "rss_before_mb": round(before, 1), "rss_after_mb": round(cp.rss_mb(), 1),
            "grew_mb": round(cp.rss_mb() - before, 1)}


# --- 6: replicas: two control planes on one PostgreSQL database ---------------------------------


def replicas(a: ControlPlaneProcess, b: ControlPlaneProcess, workdir: Path, agents: int,
             fanout_size: int, changes: int = 100, cpu_window_s: float = 20) -> dict[str, Any]:
    """Half the agents on each replica; every call through A. Propagation: from the moment a
    request is sent (and from its answer) until the agent answers the new desired state, for
    agents held by A itself and by B (reached through NOTIFY)."""
    api = Api(a)
    identities = register_fleet(a, api, agents, workdir / "certs")
    on_a, on_b = identities[0::2], identities[1::2]
    (workdir / "on-a").mkdir(exist_ok=True)
    (workdir / "on-b").mkdir(exist_ok=True)
    sims_a = Simulators(a, on_a, workdir / "on-a", processes=1) if on_a else None
    sims_b = Simulators(b, on_b, workdir / "on-b", processes=1)
    sims = [s for s in (sims_a, sims_b) if s is not None]
    ok = sims[0].wait(lambda: sum(s.total_synced() for s in sims) >= agents, timeout=900)
    if not ok:
        raise RuntimeError(f"not all {agents} agents connected within 900 s")
    time.sleep(5)
    held = {"agents_per_replica": agents // 2,
            "replica_a": {"rss_mb": round(a.rss_mb(), 1),
                          "cpu_percent_steady": round(a.cpu_percent(cpu_window_s), 1)},
            "replica_b": {"rss_mb": round(b.rss_mb(), 1),
                          "cpu_percent_steady": round(b.cpu_percent(cpu_window_s), 1)}}

    def propagation(where: list[dict[str, str]], held_by: Simulators, label: str
                    ) -> dict[str, Any]:
        from_send, from_answer = [], []
        for i in range(changes):
            server = where[i % len(where)]
            name = f"{label}{i}"
            t0 = time.time()
            made.append(api.client.apps.deploy(name, int(server["id"]),
                                               (f"{name}.zip", small_zip())))
            t1 = time.time()
            held_by.wait(lambda name=name: bool(held_by.answers(name, 1, "STARTED")),
                         timeout=30)
            answered = held_by.answers(name, 1, "STARTED")
            if answered:
                from_send.append(answered[0] - t0)
                from_answer.append(max(0.0, answered[0] - t1))
        return {"changes": changes, "reached": len(from_send),
                "p50_ms": round(1000 * percentile(from_send, 50), 1),
                "p99_ms": round(1000 * percentile(from_send, 99), 1),
                "after_answer_p50_ms": round(1000 * percentile(from_answer, 50), 1),
                "after_answer_p99_ms": round(1000 * percentile(from_answer, 99), 1)}

    made: list[dict[str, Any]] = []
    figures: dict[str, Any] = {"held": held, "propagation": []}
    if sims_a is not None:
        figures["propagation"].append({"agents_on": "A (same replica)",
                                       **propagation(on_a, sims_a, "same")})
    figures["propagation"].append({"agents_on": "B (other replica)",
                                   **propagation(on_b, sims_b, "cross")})
    for app in made:  # servers with applications of their own cannot join a group
        api.call("DELETE", f"/applications/{app['id']}")
    if fanout_size <= agents:
        figures["fanout"] = fanout(api, sims, identities, fanout_size)
    for s in sims:
        s.stop()
    return figures


# --- 7: what measuring costs ---------------------------------------------------------------

def _metric_storage(cp: ControlPlaneProcess, workdir: Path) -> tuple[int, int]:
    """(rows, bytes) of the stored measurements: the table's size on PostgreSQL, the database
    file with its write-ahead log on SQLite."""
    from sqlalchemy import create_engine, text
    engine = create_engine(cp.database_url)
    try:
        with engine.connect() as conn:
            rows = int(conn.execute(text("SELECT count(*) FROM metric_points")).scalar() or 0)
            if engine.dialect.name == "postgresql":
                size = int(conn.execute(text(
                    "SELECT pg_total_relation_size('metric_points')")).scalar() or 0)
            else:
                size = sum(p.stat().st_size for p in (workdir / "data").glob("corral.db*"))
    finally:
        engine.dispose()
    return rows, size


def metrics_cost(cp: ControlPlaneProcess, workdir: Path, n: int, interval: float,
                 settle_s: float = 12, window_s: float = 60,
                 processes: int = 2) -> dict[str, Any]:
    """The same fleet held twice: silent, then measuring (one server and one instance every
    `interval` seconds per agent), then measuring with two alerts on every server. The
    differences in control-plane CPU, and what an hour of measurements takes on disk
    (extrapolated from `window_s`), are the cost."""
    api = Api(cp)
    identities = register_fleet(cp, api, n, workdir / "certs")
    ids = [int(i["id"]) for i in identities]
    group = api.call("POST", "/serverGroups", json={"name": "measured", "serverIds": ids})
    api.client.apps.deploy("app", group["id"], ("app.zip", small_zip()))
    figures: dict[str, Any] = {"agents": n, "interval_s": interval}
    alerts = [{"name": "down", "severity": "CRITICAL", "condition": {
                   "resourceType": "server", "type": "server-down", "resources": ["*"]}},
              {"name": "hot", "severity": "WARNING", "condition": {
                   "resourceType": "server", "type": "server-cpu", "resources": ["*"],
                   "threshold": 99.9, "operator": "GREATER_THAN"}}]
    for label, measure in (("silent", False), ("measuring", True)):
        sims = Simulators(cp, identities, workdir, processes, measure=measure)
        if not sims.wait(lambda sims=sims: sims.total_synced() >= n, timeout=900):
            figures[label] = {"error": f"not all {n} agents connected within 900 s"}
            sims.stop()
            return figures
        time.sleep(settle_s)
        phases = [label] if not measure else [label, "measuring_with_alerts"]
        for phase in phases:
            if phase == "measuring_with_alerts":  # two alerts on every server, evaluated
                for body in alerts:                # by the leader
                    api.call("POST", "/alerts", json=body)
                time.sleep(settle_s)
            rows0, size0 = _metric_storage(cp, workdir)
            cpu = cp.cpu_percent(window_s)
            rows1, size1 = _metric_storage(cp, workdir)
            figures[phase] = {"cpu_percent": round(cpu, 1), "rss_mb": round(cp.rss_mb(), 1),
                              "rows_per_s": round((rows1 - rows0) / window_s, 1)}
            if measure:
                per_hour = 3600 / window_s
                figures[phase].update(
                    rows_per_hour=int((rows1 - rows0) * per_hour),
                    mb_per_hour=round((size1 - size0) * per_hour / 2**20, 1),
                    bytes_per_row=round((size1 - size0) / max(rows1 - rows0, 1)))
        sims.stop()
        time.sleep(2)
    figures["cpu_cost_percent"] = round(figures["measuring"]["cpu_percent"]
                                        - figures["silent"]["cpu_percent"], 1)
    figures["alerts_cpu_cost_percent"] = round(
        figures["measuring_with_alerts"]["cpu_percent"] - figures["measuring"]["cpu_percent"], 1)
    return figures


def rotation(cp: ControlPlaneProcess, workdir: Path, n: int, spread_s: float,
             processes: int = 2) -> dict[str, Any]:
    """A CA rotation under a held fleet: every agent renews under the new CA at a random
    moment of the spread and comes straight back with it. How long until none is left on the
    old CA, how long each renewal took (CSR sent → certificate back), how many agents were
    away at worst, and what it cost the control plane."""
    api = Api(cp)
    timing: dict[str, float] = {}
    identities = register_fleet(cp, api, n, workdir / "certs", timing=timing)
    sims = Simulators(cp, identities, workdir, processes, renew=True)
    try:
        if not sims.wait(lambda: sims.total_synced() >= n, timeout=900):
            return {"error": f"not all {n} agents connected within 900 s"}
        time.sleep(3)
        idle_cpu = cp.cpu_percent(5)
        cpu0, t0 = cp.cpu_seconds(), time.monotonic()
        api.call("POST", "/certificateAuthority/rotate")
        fewest, waiting = n, n
        while time.monotonic() - t0 < spread_s + 600:
            fewest = min(fewest, sims.total_synced())
            waiting = int(api.call("GET", "/certificateAuthority")["serversOnOldCa"])
            if waiting == 0:
                break
            time.sleep(0.2)
        moved_s = time.monotonic() - t0
        rotation_cpu = 100 * (cp.cpu_seconds() - cpu0) / moved_s
        sims.wait(lambda: sims.total_synced() >= n, timeout=60)
        back_s = time.monotonic() - t0
        latencies = [answered - asked for asked, answered in sims.renewals]
        r0 = time.monotonic()
        api.call("POST", "/certificateAuthority/retire")
        retire_s = time.monotonic() - r0
        return {
            "agents": n, "spread_s": spread_s, "registration_s": round(timing["registration_s"], 1),
            "all_on_new_ca_s": round(moved_s, 1), "all_connected_again_s": round(back_s, 1),
            "still_on_old_ca": waiting, "renewals": len(latencies),
            "refused": len(sims.refusals),
            "renewal_ms_p50": round(1000 * percentile(latencies, 50), 1) if latencies else None,
            "renewal_ms_p99": round(1000 * percentile(latencies, 99), 1) if latencies else None,
            "fewest_connected": fewest,
            "cpu_percent_idle": round(idle_cpu, 1), "cpu_percent_rotating": round(rotation_cpu, 1),
            "renewals_per_s": round(len(latencies) / moved_s, 1), "retire_s": round(retire_s, 2),
        }
    finally:
        sims.stop()


# --- kept answers across replicas ------------------------------------------------------------


def answers_across_replicas(a: ControlPlaneProcess, b: ControlPlaneProcess, changes: int
                            ) -> dict[str, Any]:
    """A group renamed through A, `changes` times; B's answer to `GET /serverGroups/{id}`,
    kept between changes, polled until it shows the new name. Milliseconds from A's answer."""
    api_a, api_b = Api(a), Api(b)
    [server] = register_fleet(a, api_a, 1, a.workdir / "answers-certs")
    gid = int(api_a.client.groups.create("kept", [int(server["id"])])["id"])
    path = f"/hybrid/api/v1/serverGroups/{gid}"
    waits: list[float] = []
    polls = 0
    before = _answers(api_b)
    with httpx.Client(base_url=b.url, headers=api_b.headers, timeout=30) as reader:
        for n in range(changes):
            for _ in range(3):  # B renders it once, then keeps it
                reader.get(path).raise_for_status()
            api_a.call("PATCH", f"/serverGroups/{gid}", json={"name": f"kept-{n}"})
            t0 = time.perf_counter()
            while reader.get(path).json()["data"]["name"] != f"kept-{n}":
                polls += 1
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError("B never showed the change made through A")
            waits.append((time.perf_counter() - t0) * 1000)
    kept, rendered = (x - y for x, y in zip(_answers(api_b), before, strict=True))
    return {"changes": changes, "p50_ms": round(percentile(waits, 50), 2),
            "p99_ms": round(percentile(waits, 99), 2), "max_ms": round(max(waits), 2),
            "stale_reads": polls, "kept_share_on_b": round(kept / (kept + rendered), 2)}
