"""The control plane the model drives: in this process (FastAPI's test client, for speed) or a
real `corral serve` process over HTTP. Both on SQLite or PostgreSQL."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Protocol

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text, update

from corral.app import create_app
from corral.config import Settings
from corral.controlplane import ControlPlane
from corral.db.models import Server
from corral.db.session import make_engine
from tests.e2e.processes import ServeProcess

ADMIN_PASSWORD = "model-admin-password"


class Http(Protocol):
    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...


class Backend:
    """One control plane for a whole test: every example of the state machine works in
    environments of its own, so examples follow each other on the same database, as days do on
    a real installation (ids must never come back, whatever an earlier example deleted)."""

    http: Http
    org_id: str
    ids: dict[str, set[Any]]
    """Every id ever answered, by space (`target`, `application`)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.ids = {"target": set(), "application": set()}
        self.restarts = 0
        self._engine: Engine | None = None

    def admin_token(self) -> str:
        r = self.http.request("POST", "/accounts/login",
                              json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def organization(self, token: str) -> str:
        r = self.http.request("GET", "/accounts/api/me",
                              headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return str(r.json()["user"]["organization"]["id"])

    def mark_seen(self, server_id: int) -> None:
        """The server's agent connected once and is away now (DISCONNECTED): it takes
        deployments. The model has no agents; `tests/model/test_status_words.py` has."""
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        with self._engine.begin() as conn:
            conn.execute(update(Server).where(Server.id == server_id)
                         .values(status="DISCONNECTED"))

    def restart(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class InProcess(Backend):
    def __init__(self, database_url: str, data_dir: Path) -> None:
        super().__init__(database_url)
        self.settings = Settings(data_dir=data_dir, database_url=database_url,
                                 admin_username="admin", admin_password=ADMIN_PASSWORD,
                                 registration_rate_per_minute=0, port=8080, gateway_port=8443)
        self._open()

    def _open(self) -> None:
        self.plane = ControlPlane.open(self.settings)
        self.plane.bootstrap()
        self.client = TestClient(create_app(self.plane), raise_server_exceptions=False)
        self.client.__enter__()
        self.http = self.client

    def restart(self) -> None:
        self.restarts += 1
        self.client.__exit__(None, None, None)
        self.plane.close()
        self._open()

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.plane.close()
        super().close()


class RealProcess(Backend):
    """`corral serve` on free ports; a restart is SIGTERM and a new process on the same
    database and data folder."""

    def __init__(self, database_url: str, data_dir: Path,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(database_url)
        self.serve = ServeProcess(data_dir=data_dir, database_url=database_url,
                                  env={"CORRAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
                                       "CORRAL_PASSWORD_HASH": "owasp",
                                       "CORRAL_REGISTRATION_RATE_PER_MINUTE": "0",
                                       **(env or {})})
        self.serve.start()
        self.http = httpx.Client(base_url=self.serve.url, timeout=60)

    def restart(self) -> None:
        self.restarts += 1
        assert self.serve.stop(signal.SIGTERM) == 0, self.serve.output()[-3000:]
        self.serve.start()

    def close(self) -> None:
        self.http.close()  # type: ignore[attr-defined]
        if self.serve.proc is not None and self.serve.proc.poll() is None:
            self.serve.stop(signal.SIGKILL)
        super().close()


def empty_database(url: str) -> None:
    """PostgreSQL databases are shared by a worker's tests: start from no schema at all."""
    if not url.startswith("postgresql"):
        return
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
