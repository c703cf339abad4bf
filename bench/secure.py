"""What secure properties cost: deploys carrying 100 secure properties against deploys carrying
100 plain ones, to a server whose (simulated) agent answers at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.harness import Api, ControlPlaneProcess, Simulators, percentile, register_fleet
from bench.scenarios import small_zip
from corral.client.resources import configuration


def deploys(cp: ControlPlaneProcess, workdir: Path, rounds: int, count: int = 100,
            value_chars: int = 32) -> dict[str, Any]:
    """`rounds` deploys of each kind, alternating: the POST's answer, and from sending it until
    the agent answered that it runs the application (the control plane sealed the values, then
    opened them into the desired state it pushed)."""
    api = Api(cp)
    [server] = register_fleet(cp, api, 1, workdir / "certs")
    sims = Simulators(cp, [server], workdir, processes=1)
    try:
        if not sims.wait(lambda: sims.total_synced() >= 1, timeout=60):
            raise RuntimeError("the simulated agent did not connect")
        timings: dict[str, dict[str, list[float]]] = {
            kind: {"answer": [], "running": []} for kind in ("plain", "secure")}
        values = {f"prop.{i:03d}": f"{i:03d}" + "v" * (value_chars - 3) for i in range(count)}
        for n in range(rounds):
            for kind in ("plain", "secure"):
                name = f"{kind}-{n}"
                given = configuration(name, values) if kind == "plain" \
                    else configuration(name, secure=values)
                t0 = time.monotonic()
                sent = time.time()
                app = api.client.apps.deploy(name, int(server["id"]),
                                             (f"{name}.zip", small_zip()), configuration=given)
                timings[kind]["answer"].append(time.monotonic() - t0)
                sims.wait(lambda name=name: bool(sims.answers(name, 1, "STARTED")), timeout=30)
                answered = sims.answers(name, 1, "STARTED")
                if answered:
                    timings[kind]["running"].append(answered[0] - sent)
                api.call("DELETE", f"/applications/{app['id']}")
        return {"deploys_each": rounds, "properties": count, "value_chars": value_chars,
                **{kind: {f"{what}_p50_ms": round(1000 * percentile(t, 50), 1)
                          for what, t in figures.items()}
                   | {f"{what}_p99_ms": round(1000 * percentile(t, 99), 1)
                      for what, t in figures.items()}
                   for kind, figures in timings.items()}}
    finally:
        sims.stop()
