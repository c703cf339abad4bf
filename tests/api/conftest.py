"""An in-process control plane on a real database, driven through FastAPI's test client."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from corral import wire
from corral.app import create_app
from corral.config import Settings
from corral.controlplane import ControlPlane
from corral.db.models import Environment, Server
from corral.domain import accounts, desired_state
from tests.arm_shapes import check_answer
from tests.support import at_newest_revision, make_csr

ADMIN_PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _quick_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its real cost takes ~0.15 s a hash, and these in-process tests sign in and
    create users hundreds of times. They test what happens around the hash, not its cost:
    the real cost is held by the process tests (tests/security) and measured by
    `python -m bench security`. The same algorithm, its smallest parameters."""
    cheapest = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    for profile in accounts.PASSWORD_HASHERS:  # whichever the settings name
        monkeypatch.setitem(accounts.PASSWORD_HASHERS, profile, cheapest)
    monkeypatch.setattr(accounts, "_hasher", cheapest)
    monkeypatch.setattr(accounts, "_dummy_hash", None)


def settings_on(data_dir: Path, database_url: str, sqlite_template: Path) -> Settings:
    """The settings of an in-process control plane on `database_url`, at the newest revision."""
    at_newest_revision(database_url, sqlite_template)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        admin_username="admin",
        admin_password=ADMIN_PASSWORD,
        port=8080,
        gateway_port=8443,
    )


@contextmanager
def opened(settings: Settings) -> Iterator[ControlPlane]:
    plane = ControlPlane.open(settings)
    plane.bootstrap()
    try:
        yield plane
    finally:
        plane.close()


def asgi_client(plane: ControlPlane) -> TestClient:
    """FastAPI's test client on the application of `plane`: an answer the code did not foresee
    comes back as a 500, as a real server would send it."""
    return TestClient(create_app(plane), raise_server_exceptions=False)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, sqlite_template: Path) -> Settings:
    return settings_on(tmp_path / "data", database_url, sqlite_template)


@pytest.fixture
def plane(settings: Settings) -> Iterator[ControlPlane]:
    with opened(settings) as plane:
        yield plane


@pytest.fixture
def client(plane: ControlPlane) -> Iterator[TestClient]:
    with asgi_client(plane) as c:
        yield c


@dataclass
class Api:
    """A logged-in client that adds the org and env headers of hybrid calls."""

    client: TestClient
    plane: ControlPlane
    token: str
    org_id: str
    env_id: str
    envs: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-ANYPNT-ORG-ID": self.org_id,
            "X-ANYPNT-ENV-ID": self.env_id,
        }

    def in_env(self, name: str) -> Api:
        return Api(self.client, self.plane, self.token, self.org_id, self.envs[name], self.envs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        r = self.client.request(method, f"/hybrid/api/v1{path}", headers=headers, **kwargs)
        check_answer(path, r)
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    # --- the steps most tests need -------------------------------------------------------

    def registration_token(self) -> str:
        r = self.get("/servers/registrationToken")
        assert r.status_code == 200, r.text
        return str(r.json()["data"])

    def register(self, name: str, token: str | None = None, *, seen: bool = True) -> int:
        """A registered server. With `seen`, its agent connected once and is away now
        (DISCONNECTED), so it takes deployments; a server that never connected does not."""
        r = self.client.post(
            "/hybrid/api/v1/servers",
            headers={"Authorization": f"Bearer {token or self.registration_token()}"},
            json={"muleVersion": "4.4.0", "gatewayVersion": "1.0", "muleLabel": name,
                  "signatureRequest": make_csr()},
        )
        assert r.status_code == 200, r.text
        server_id = int(r.json()["serverId"])
        if seen:
            with self.plane.sessions.begin() as s:
                s.get_one(Server, server_id).status = "DISCONNECTED"
        return server_id

    def deploy(
        self,
        name: str,
        target_id: int | str,
        archive: bytes | None = None,
        configuration: str | None = None,
    ) -> httpx.Response:
        data = {"artifactName": name, "targetId": str(target_id)}
        if configuration is not None:
            data["configuration"] = configuration
        files = {"file": (f"{name}.zip", archive or make_zip(), "application/zip")}
        return self.post("/applications", data=data, files=files)


def make_zip(files: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in (files or {"Procfile": "web: python -m http.server $PORT\n"}).items():
            z.writestr(name, content)
    return buf.getvalue()


def signed_in(client: TestClient, plane: ControlPlane) -> Api:
    """The admin, signed in through `client`, in Production."""
    r = client.post("/accounts/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    with plane.sessions() as s:
        envs = {e.name: e.id for e in s.scalars(select(Environment))}
        org_id = s.scalar(select(Environment.organization_id))
    assert org_id is not None
    return Api(client, plane, r.json()["access_token"], org_id, envs["Production"], envs)


@pytest.fixture
def api(client: TestClient, plane: ControlPlane) -> Api:
    return signed_in(client, plane)


def desired(plane: ControlPlane, server_id: int) -> dict[str, Any]:
    """The desired-state message the gateway would push to this server now, as its agent
    reads it."""
    with plane.sessions() as s:
        _revision, text = desired_state.messages(s, [server_id], plane.told())[server_id]
    return wire.Desired.model_validate_json(text).model_dump()
