"""What a fleet file costs: 100 applications on 10 groups of 2 servers, applied once, then planned
and applied again against the fleet that matches it (the case a CI job meets on every run)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import PASSWORD, Api, ControlPlaneProcess, connect_once, register_fleet
from bench.scenarios import small_zip
from corral import fleetfile
from corral.client import Client
from corral.fleetfile.apply import Applier


def _file(folder: Path, servers: list[str], groups: int, apps: int,
          secret: bool = False) -> Path:
    (folder / "app.zip").write_bytes(small_zip())
    lines = ["environment: Production", "serverGroups:"]
    per = len(servers) // groups
    for g in range(groups):
        lines.append(f"  - name: group-{g}")
        lines.append(f"    servers: [{', '.join(servers[g * per:(g + 1) * per])}]")
    lines.append("applications:")
    for a in range(apps):
        lines += [f"  - name: app-{a:03d}", f"    target: group-{a % groups}",
                  "    artifact: app.zip", f"    properties: {{index: '{a}', greeting: hello}}"]
        if secret:
            lines.append("    secureProperties: {token: {env: BENCH_TOKEN}}")
    path = folder / "fleet.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(cp: ControlPlaneProcess, workdir: Path, groups: int = 10, apps: int = 100,
        repeats: int = 5) -> dict[str, Any]:
    api = Api(cp)
    identities = register_fleet(cp, api, groups * 2, workdir / "certs")
    connect_once(cp, identities, workdir)
    names = [s["name"] for s in api.call("GET", "/servers")]
    path = _file(workdir, sorted(names), groups, apps)
    client = Client(cp.url, timeout=300)
    client.login("admin", PASSWORD)

    t0 = time.monotonic()
    made = fleetfile.prepare(client, path, prune=False, environment=None)
    planned_first = time.monotonic() - t0
    t0 = time.monotonic()
    Applier(client, made.current, lambda _: None).run(made.plan)
    applied_first = time.monotonic() - t0

    def unchanged(file: Path) -> tuple[float, float]:
        """(plan, apply) of a file the fleet matches: apply is its plan, then nothing sent."""
        t0 = time.monotonic()
        again = fleetfile.prepare(client, file, prune=False, environment=None)
        planned = time.monotonic() - t0
        if not again.plan.empty:
            raise RuntimeError(f"{len(again.plan.changes)} changes planned on a matching fleet")
        Applier(client, again.current, lambda _: None).run(again.plan)
        return planned, time.monotonic() - t0

    plans, applies = zip(*[unchanged(path) for _ in range(repeats)], strict=True)
    # the same with a secure property each: the plan asks for 100 digests
    os.environ["BENCH_TOKEN"] = "bench-token-value"
    with_secrets = _file(workdir, sorted(names), groups, apps, secret=True)
    made = fleetfile.prepare(client, with_secrets, prune=False, environment=None)
    Applier(client, made.current, lambda _: None).run(made.plan)
    secret_plans = [unchanged(with_secrets)[0] for _ in range(repeats)]
    cli = []
    env = {**os.environ, "CORRAL_URL": cp.url, "CORRAL_TOKEN": client.headers[
        "Authorization"].removeprefix("Bearer "), "CORRAL_CONFIG": str(workdir / "cli.json")}
    for _ in range(repeats):
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "corral", "plan", "-f", str(with_secrets)],
                           env=env,
                           capture_output=True, text=True, timeout=120)
        cli.append(time.monotonic() - t0)
        if r.returncode != 0:
            raise RuntimeError(f"corral plan exited {r.returncode}: {r.stdout}{r.stderr}")
    return {"groups": groups, "servers": groups * 2, "applications": apps,
            "first_plan_s": round(planned_first, 2), "first_apply_s": round(applied_first, 2),
            "plan_unchanged_s": round(min(plans), 3), "plan_unchanged_max_s": round(max(plans), 3),
            "apply_unchanged_s": round(min(applies), 3),
            "plan_unchanged_one_secret_each_s": round(min(secret_plans), 3),
            "corral_plan_process_s": round(min(cli), 2)}
