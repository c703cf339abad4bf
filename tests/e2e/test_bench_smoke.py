"""The benchmark harness works end to end on a small fleet (figures are not judged here:
speed targets live in bench/, never in tests). `make bench-smoke` runs it; CI runs that after
`make test`, which leaves it out (a long profile's check: a minute and a half of its own
control planes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench
@pytest.mark.slow
def test_bench_smoke_runs(tmp_path: Path) -> None:
    env = {**os.environ, "CORRAL_BENCH_RESULTS": str(tmp_path / "results"),
           "CORRAL_BENCH_WORK": str(tmp_path / "work")}
    r = subprocess.run([sys.executable, "-m", "bench", "smoke", "--db", "sqlite"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    fleet = json.loads((tmp_path / "results" / "fleet-smoke-sqlite.json").read_text())
    assert fleet["registered"] == 10
    assert fleet["held"][0]["agents"] == 10 and fleet["held"][0]["rss_mb"] > 0
    assert fleet["restart"]["all_running_after_restart_s"] is not None
    [fan] = fleet["fanout"]
    assert all(fan[op]["complete"] for op in ("deploy", "stop", "redeploy"))
    assert fan["deploy"]["api_started_s"] is not None
    api = json.loads((tmp_path / "results" / "api-smoke-sqlite.json").read_text())
    assert {e["endpoint"].split(" ")[0] for e in api["endpoints"]} >= {"GET", "PATCH", "bare"}
    assert all(e["errors"] == 0 for e in api["endpoints"])
    assert api["registrations_per_s"] > 0 and api["applications_created_per_s"] > 0
    assert all(e["throughput_vs_bare"] > 0 for e in api["endpoints"])
    artifacts = json.loads((tmp_path / "results" / "artifacts-smoke-sqlite.json").read_text())
    assert artifacts["upload"]["mb_per_s"] > 0 and artifacts["download"]["mb_per_s"] > 0
    assert "Fan-out" in r.stdout and "API latency" in r.stdout
    security = json.loads((tmp_path / "results" / "security-smoke-sqlite.json").read_text())
    assert security["throttled"]["attempts"].get("429", 0) > 0  # the flood met the throttle
    assert security["unthrottled"]["flood_p50_ms"] > 0
    assert "413" in security["hostile_body"]["answer"]
    rotation = json.loads((tmp_path / "results" / "rotation-smoke-sqlite.json").read_text())
    assert rotation["still_on_old_ca"] == 0 and rotation["renewals"] == 10
    assert rotation["refused"] == 0 and rotation["renewal_ms_p50"] > 0
    secure = json.loads((tmp_path / "results" / "secure-smoke-sqlite.json").read_text())
    assert secure["secure"]["running_p50_ms"] > 0 and secure["plain"]["running_p50_ms"] > 0
