"""`python -m bench all | fleet | api | api-fleet | api-replicas | answers | artifacts | security |
replicas | metrics | rotation | faults | secure | fleetfile | smoke [--db sqlite,postgresql]`

Prints each scenario's figures as tables and writes them as JSON to bench/results/."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, make_url, text

from bench import faults, fleetfile, scenarios, secure
from bench.harness import ControlPlaneProcess, clean, load_balanced, raise_fd_limit

RESULTS = Path(os.environ.get("CORRAL_BENCH_RESULTS") or Path(__file__).with_name("results"))
WORK = Path(os.environ.get("CORRAL_BENCH_WORK")
            or Path(__file__).resolve().parents[1] / ".cache" / "bench")
console = Console()
PG_ADMIN = os.environ.get("CORRAL_BENCH_DATABASE_URL",
                          "postgresql+psycopg://127.0.0.1:5432/test")

PLANS = {
    # name: (fleet sizes held, fan-out sizes, api servers, api apps, artifact MB)
    "full": ([1000, 5000, 10000], [100, 1000, 10000], 1000, 1000, 200),
    "smoke": ([10], [10], 5, 10, 2),
}
REPLICAS = {  # name: (agents over two replicas, fan-out group size, changes timed)
    "full": (10000, 10000, 100),
    "smoke": (20, 20, 5),
}
MASTER_KEY = "the-bench-replicas-master-key-0123456789abcdef"
STEADY = {  # name: (seconds a held fleet settles, seconds its CPU is measured, seconds of
    #          calls per API endpoint)
    "full": (12, 20, 5.0),
    "smoke": (1, 1, 0.2),  # the smoke test checks the figures exist, not what they are
}
METRICS = {  # name: (agents measuring, seconds between measurements, seconds measured)
    "full": (10000, 15.0, 60),
    "smoke": (10, 1.0, 2),
}
ROTATION = {  # name: (agents held, seconds the renewals are spread over)
    "full": (10000, 120.0),
    "smoke": (10, 1.0),
}
FAULT_ROUNDS = 5  # a failing rollout reverted, this many times (not in smoke: real agents,
#                   real applications: half a minute more of the suite)
SECURE_ROUNDS = {"full": 200, "smoke": 3}  # deploys of each kind: plain, secure properties
SECURITY = {  # name: (reads per phase, attacking clients, hostile body MiB, sign-in tries)
    "full": (300, 3, 300, 20),
    "smoke": (20, 1, 20, 2),  # light: the smoke test runs beside the rest of the suite
}


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'data' / 'corral.db'}"
        return
    name = f"corral_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextmanager
def s3_server(workdir: Path) -> Iterator[dict[str, str]]:
    """moto's S3-compatible server on a local port, with a bucket: the `s3` artifact store."""
    import subprocess
    import sys

    import boto3
    import httpx

    from bench.harness import free_port

    port = free_port()
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
    with open(workdir / "moto.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        os.environ.update(env)
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="corral-bench")
        yield {**env, "CORRAL_S3_ENDPOINT_URL": url,
               "CORRAL_ARTIFACT_STORE": "s3://corral-bench/artifacts"}
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def control_plane(kind: str, label: str, env: dict[str, str] | None = None
                  ) -> Iterator[tuple[ControlPlaneProcess, Path]]:
    workdir = clean(WORK / f"{label}-{kind}")
    (workdir / "data").mkdir()
    with database(kind, workdir) as url:
        cp = ControlPlaneProcess(workdir, url)
        cp.env.update(env or {})
        cp.start()
        try:
            yield cp, workdir
        finally:
            cp.stop()


@contextmanager
def replica_pair(kind: str) -> Iterator[tuple[ControlPlaneProcess, ControlPlaneProcess, Path]]:
    """Two replicas on one database, sharing keys and artifacts (in the database)."""
    workdir = clean(WORK / f"replicas-{kind}")
    with database(kind, workdir) as url:
        a = ControlPlaneProcess(clean(workdir / "a"), url)
        b = ControlPlaneProcess(clean(workdir / "b"), url)
        urls = [f"wss://127.0.0.1:{p.gateway_port}" for p in (a, b)]
        for p in (a, b):
            (p.workdir / "data").mkdir()
            p.env.update({"CORRAL_MASTER_KEY": MASTER_KEY, "CORRAL_ARTIFACT_STORE": "database",
                          "CORRAL_GATEWAY_URLS": json.dumps(urls),
                          "CORRAL_REPLICA_URL": f"wss://127.0.0.1:{p.gateway_port}"})
        a.start()
        b.start()
        try:
            yield a, b, workdir
        finally:
            b.stop()
            a.stop()


def machine() -> dict[str, Any]:
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.machine())
    return {"cores": os.cpu_count(), "memory": mem.split(":", 1)[1].strip(), "cpu": cpu,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def save(name: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")


def table(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    t = Table(title=title, title_justify="left")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*[str(row.get(c, "")) for c in columns])
    console.print(t)


def run(which: str, dbs: list[str], plan: str) -> None:
    sizes, fanouts, api_servers, api_apps, artifact_mb = PLANS[plan]
    reads, attackers, body_mib, tries = SECURITY[plan]
    limit = raise_fd_limit()
    if max(sizes) + 500 > limit:
        console.print(f"[yellow]{max(sizes)} agents do not fit: the file-descriptor limit is "
                      f"{limit}; using what fits[/]")
        sizes = [n for n in sizes if n + 500 <= limit]
        fanouts = [n for n in fanouts if n + 500 <= limit]
    for kind in dbs:
        suffix = f"{kind}" if plan == "full" else f"{plan}-{kind}"
        if which in ("all", "fleet"):
            with control_plane(kind, "fleet") as (cp, workdir):
                figures = scenarios.fleet(cp, workdir, sizes, fanouts,
                                          settle_s=STEADY[plan][0], cpu_window_s=STEADY[plan][1])
            save(f"fleet-{suffix}", figures)
            table(f"Agents held ({kind}); {figures['registered']} registered in "
                  f"{figures['registration_s']} s", figures["held"])
            table(f"Control-plane restart ({kind})", [figures["restart"]])
            table(f"Fan-out ({kind}): seconds after the request was sent",
                  [{"group": f["group_size"], "operation": op, **f[op]}
                   for f in figures["fanout"] for op in ("deploy", "stop", "redeploy")])
        if which in ("all", "api"):
            with control_plane(kind, "api") as (cp, workdir):
                figures = scenarios.api_latency(cp, workdir, api_servers, api_apps,
                                                seconds=STEADY[plan][2])
            save(f"api-{suffix}", figures)
            table(f"API latency ({kind}): {api_servers} servers, {api_apps} applications, "
                  f"{figures['clients']} concurrent clients; {figures['registrations_per_s']} "
                  f"registrations/s, {figures['applications_created_per_s']} applications "
                  "created/s", figures["endpoints"])
        if which in ("all", "security"):
            flood: dict[str, Any] = {}
            for label, free in (("throttled", "5"), ("unthrottled", "1000000000")):
                with control_plane(kind, f"security-{label}",
                                   {"CORRAL_LOGIN_FREE_FAILURES": free}) as (cp, workdir):
                    flood[label] = scenarios.login_flood(cp, reads, attackers)
                    if label == "unthrottled":
                        flood["guess_timing"] = scenarios.guess_timing(cp, tries)
                        flood["hostile_body"] = scenarios.hostile_body(cp, body_mib)
            save(f"security-{suffix}", flood)
            table(f"Login flood ({kind}): GET /servers?limit=1 while {attackers} clients send "
                  "wrong passwords", [{"throttle": k, **{x: y for x, y in v.items() if x != "attempts"},
                                 "answers": v["attempts"]}
                                for k, v in flood.items() if k in ("throttled", "unthrottled")])
            table(f"Failed sign-in time ({kind})", [flood["guess_timing"]])
            table(f"Hostile body ({kind})", [flood["hostile_body"]])
        if which in ("all", "artifacts"):
            rows = []
            every: dict[str, Any] = {}
            # the database store is PostgreSQL's (replicas share it); SQLite keeps files
            for store in ("file", "s3") if kind == "sqlite" else ("file", "database", "s3"):
                with contextlib.ExitStack() as stack:
                    env = {"CORRAL_ARTIFACT_STORE": store}
                    if store == "s3":
                        env = stack.enter_context(s3_server(clean(WORK / f"s3-{kind}")))
                    cp, workdir = stack.enter_context(
                        control_plane(kind, f"artifacts-{store}", env))
                    figures = scenarios.artifacts(cp, workdir, artifact_mb)
                every[store] = figures
                rows += [{"store": store, "direction": d, **figures[d]}
                         for d in ("upload", "download")]
            save(f"artifacts-{suffix}", {**every["file"], "stores": every})
            table(f"Artifacts ({kind}): {every['file']['size_mb']} MB, by store", rows)
        if which in ("all", "metrics"):
            agents, interval, window = METRICS[plan]
            with control_plane(kind, "metrics",
                               {"CORRAL_METRICS_SECONDS": str(interval)}) as (cp, workdir):
                figures = scenarios.metrics_cost(cp, workdir, agents, interval,
                                                 settle_s=STEADY[plan][0], window_s=window)
            save(f"metrics-{suffix}", figures)
            table(f"Measuring ({kind}): {agents} agents, one server and one instance each "
                  f"every {interval:g} s; control-plane CPU {figures.get('cpu_cost_percent')} "
                  f"points more than silent, {figures.get('alerts_cpu_cost_percent')} more with "
                  "two alerts on every server",
                  [{"fleet": k, **v} for k, v in figures.items()
                   if k in ("silent", "measuring", "measuring_with_alerts")])
        if which in ("all", "rotation"):
            agents, spread = ROTATION[plan]
            with control_plane(kind, "rotation", {
                    "CORRAL_CA_ROTATION_SPREAD_SECONDS": str(spread)}) as (cp, workdir):
                figures = scenarios.rotation(cp, workdir, agents, spread)
            save(f"rotation-{suffix}", figures)
            table(f"CA rotation ({kind}): {agents} agents renewing within {spread:g} s",
                  [{"figure": k, "value": v} for k, v in figures.items() if k != "machine"])
        if which == "faults" or (which == "all" and plan == "full"):
            run_faults(kind, suffix, FAULT_ROUNDS)
        if which == "fleetfile" or (which == "all" and plan == "full"):
            with control_plane(kind, "fleetfile") as (cp, workdir):
                figures = fleetfile.run(cp, workdir)
            save(f"fleetfile-{suffix}", figures)
            table(f"A fleet file of {figures['applications']} applications on "
                  f"{figures['groups']} groups ({kind}); seconds", as_rows(figures))
        if which in ("all", "secure"):
            with control_plane(kind, "secure") as (cp, workdir):
                figures = secure.deploys(cp, workdir, rounds=SECURE_ROUNDS[plan])
            save(f"secure-{suffix}", figures)
            table(f"Deploys with {figures['properties']} properties of {figures['value_chars']} "
                  f"characters ({kind}), {figures['deploys_each']} of each kind; ms",
                  [{"kind": k, **figures[k]} for k in ("plain", "secure")])
        if which in ("all", "api-fleet"):
            with control_plane(kind, "api-fleet") as (cp, workdir):
                figures = scenarios.api_latency(cp, workdir, api_servers, api_apps,
                                                seconds=STEADY[plan][2], fleet=max(sizes))
            save(f"api-fleet-{suffix}", figures)
            table(f"API latency ({kind}) with {figures['agents_connected']} agents connected "
                  "and measuring", figures["endpoints"])
        if which in ("all", "api-replicas") and kind == "postgresql":
            with replica_pair(kind) as (a, b, workdir), load_balanced([a, b], workdir) as front:
                figures = scenarios.api_latency(front, workdir, api_servers, api_apps,
                                                seconds=STEADY[plan][2], one_process=False)
            save(f"api-replicas-{suffix}", figures)
            table(f"API latency ({kind}), two replicas behind HAProxy; "
                  f"{figures['registrations_per_s']} registrations/s, "
                  f"{figures['applications_created_per_s']} applications created/s",
                  figures["endpoints"])
        if which in ("all", "answers") and kind == "postgresql":
            with replica_pair(kind) as (a, b, _):
                figures = scenarios.answers_across_replicas(a, b, REPLICAS[plan][2])
            save(f"answers-{suffix}", figures)
            table("Kept answers across replicas: a group renamed through A until B's kept "
                  "answer shows it", [figures])
        if which in ("all", "replicas") and kind == "postgresql":
            agents, fan, changes = REPLICAS[plan]
            with replica_pair(kind) as (a, b, workdir):
                figures = scenarios.replicas(a, b, workdir, agents, fan, changes,
                                             cpu_window_s=STEADY[plan][1])
            save(f"replicas-{suffix}", figures)
            table(f"Two replicas ({kind}): {agents} agents, half on each",
                  [{"replica": r, **figures["held"][f"replica_{r.lower()}"]} for r in "AB"])
            table("Propagation: a deploy through A until the agent answered",
                  figures["propagation"])
            if "fanout" in figures:
                f = figures["fanout"]
                table(f"Fan-out over two replicas: group of {f['group_size']}",
                      [{"operation": op, **f[op]} for op in ("deploy", "stop", "redeploy")])


def as_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure, for a table too wide as one row."""
    return [{"figure": k, "value": v} for k, v in figures.items()]


def run_faults(kind: str, suffix: str, rounds: int) -> None:
    figures: dict[str, Any] = {}
    with control_plane(kind, "rollouts") as (cp, _):
        figures["rollouts"] = faults.rollouts(cp, rounds)
    table(f"A failing version reverted ({kind}): 3 servers, one at a time, the health check "
          "gives up after 4 s; seconds after the redeploy", figures["rollouts"]["reverts"])
    table(f"A healthy version, one server at a time ({kind}): servers STARTED, sampled every "
          "100 ms", as_rows(figures["rollouts"]["healthy"]))
    if kind == "postgresql":
        with replica_pair(kind) as (a, b, _):
            figures["failover"] = faults.replica_failover(a, b)
        table("kill -9 of replica A (the leader, holding 3 agents) during a group deploy; "
              "seconds after the kill", as_rows(figures["failover"]))
        missing = faults.private_postgres_missing()
        if missing:
            figures["database_restart"] = {"skipped": missing}
            console.print(f"[yellow]PostgreSQL restart not measured: {missing}[/]")
        else:
            with faults.private_postgres() as pg:
                cp = ControlPlaneProcess(clean(WORK / "database-restart"), pg.url)
                (cp.workdir / "data").mkdir()
                cp.start()
                try:
                    figures["database_restart"] = faults.database_restart(cp, pg)
                finally:
                    cp.stop()
            table("PostgreSQL stopped and started under GET /servers every 100 ms",
                  as_rows(figures["database_restart"]))
    save(f"faults-{suffix}", figures)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario",
                        choices=["all", "fleet", "api", "api-fleet", "api-replicas", "answers",
                                 "artifacts",
                                 "security",
                                 "replicas",
                                 "metrics", "rotation", "faults", "secure", "fleetfile",
                                 "smoke"])
    parser.add_argument("--db", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    args = parser.parse_args()
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    if args.scenario == "smoke":
        run("all", dbs, "smoke")
    else:
        run(args.scenario, dbs, "full")


if __name__ == "__main__":
    main()
