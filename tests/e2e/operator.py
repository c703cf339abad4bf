"""An operator's HTTP client of a running control plane (`Operator`), and the `corral`
command run as a process (`Cli`)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from corral.client import Client
from corral.client.resources import configuration
from tests.arm_shapes import check_answer, check_application
from tests.e2e.processes import FORKS, ServeProcess
from tests.support import eventually


class Operator:
    """Logs in (as admin unless told) and drives the hybrid API of a running control plane."""

    def __init__(self, serve: ServeProcess, password: str, username: str = "admin",
                 environment: str = "Production") -> None:
        self.client = Client(serve.url, verify=serve.verify, timeout=30)
        self.client.login(username, password)
        self.client.use_environment(environment)
        self.http = self.client.http  # bare: no token unless a test passes `headers`
        self.headers = self.client.headers
        self.serve = serve

    def call(self, method: str, path: str, expect: int | None = None, **kw: object) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
        r = self.http.request(method, f"/hybrid/api/v1{path}", headers=headers, **kw)  # type: ignore[arg-type]
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        check_answer(path, r)
        return r

    def data(self, path: str) -> Any:
        return self.call("GET", path, expect=200).json()["data"]

    def registration_token(self) -> str:
        return str(self.data("/servers/registrationToken"))

    def deploy(self, name: str, target: int, archive: bytes,
               properties: dict[str, str] | None = None) -> dict[str, Any]:
        """Through the client's one deploy form; the answer held to ARM's shape."""
        app = self.client.apps.deploy(
            name, target, (f"{name}.zip", archive),
            configuration=configuration(name, properties) if properties else None)
        check_application(app)
        return app

    def _until(self, path: str, check: Callable[[dict[str, Any]], bool], timeout: float,
               what: str) -> dict[str, Any]:
        return eventually(lambda: self.data(path), check, timeout=timeout,
                          what=f"{path} {what}")

    def wait_app(self, app_id: int, status: str, timeout: float = 30) -> dict[str, Any]:
        """Poll until the application's aggregated status is `status`; for STARTED, until it
        is done, as ARM's clients wait: `desiredStatus` STARTED too, not UPDATED (it already
        runs on some servers, not yet on all; ADR 0006)."""
        def reached(a: dict[str, Any]) -> bool:
            return bool(a["lastReportedStatus"] == status
                        and (status != "STARTED" or a["desiredStatus"] == "STARTED"))

        return self._until(f"/applications/{app_id}", reached, timeout, f"reached {status}")

    def wait_server(self, server_id: int, status: str, timeout: float = 30) -> dict[str, Any]:
        return self._until(f"/servers/{server_id}", lambda s: s["status"] == status, timeout,
                           f"became {status}")


ADMIN_PASSWORD = "e2e-admin-password"


class Cli:
    """`corral` as a person runs it, with a configuration of its own (`CORRAL_CONFIG`)."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        self.env.update({"CORRAL_CONFIG": str(tmp_path / "cli" / "config.json"),
                         "NO_COLOR": "1", "COLUMNS": "200"})
        self.config = tmp_path / "cli" / "config.json"

    def __call__(self, *args: str, ok: bool = True, timeout: float = 120,
                 stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`stdin`: what the command reads on its standard input (else nothing)."""
        r = FORKS.run(args, env=self.env, timeout=timeout, input=stdin)
        if ok:
            assert r.returncode == 0, f"corral {' '.join(args)}\n{r.stdout}\n{r.stderr}"
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)
