"""`python -m bench all | fleet | api | artifacts | security | smoke [--db sqlite,postgresql]`

Prints each scenario's figures as tables and writes them as JSON to bench/results/."""

from __future__ import annotations

import argparse
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

from bench import scenarios
from bench.harness import ControlPlaneProcess, clean, raise_fd_limit

RESULTS = Path(os.environ.get("CORRAL_BENCH_RESULTS") or Path(__file__).with_name("results"))
WORK = Path(os.environ.get("CORRAL_BENCH_WORK")
            or Path(__file__).resolve().parents[1] / ".cache" / "bench")
console = Console()
PG_ADMIN = os.environ.get("CORRAL_BENCH_DATABASE_URL",
                          "postgresql+psycopg://127.0.0.1:5432/test")

PLANS = {
    # name: (fleet sizes held, fan-out sizes, api servers, api apps, artifact MB)
    "full": ([1000, 5000, 10000], [100, 1000, 10000], 1000, 1000, 200),
    "smoke": ([30], [30], 10, 30, 5),
}
STEADY = {  # name: (seconds a held fleet settles, seconds its CPU is measured, API requests
    #          per endpoint)
    "full": (12, 20, 400),
    "smoke": (1, 1, 40),  # the smoke test checks the figures exist, not what they are
}
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
                                                requests=STEADY[plan][2])
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
            with control_plane(kind, "artifacts") as (cp, workdir):
                figures = scenarios.artifacts(cp, workdir, artifact_mb)
            save(f"artifacts-{suffix}", figures)
            table(f"Artifacts ({kind}): {figures['size_mb']} MB",
                  [{"direction": d, **figures[d]} for d in ("upload", "download")])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario",
                        choices=["all", "fleet", "api", "artifacts", "security", "smoke"])
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
