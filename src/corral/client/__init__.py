"""One HTTP client for Corral's API, used by the CLI, the benchmarks and the end-to-end tests:
sign in, choose the organization and environment, call hybrid endpoints, read ARM's error
bodies. It knows nothing of how its caller reports errors: it raises `ApiError`."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from corral.client import resources

HYBRID = "/hybrid/api/v1"


KEEPALIVE_SECONDS = 2.0


class ApiError(Exception):
    """An answer of 400 or more (or no answer), with ARM's message when there is one."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Environment:
    org_id: str
    env_id: str
    env_name: str


def error_message(r: httpx.Response) -> str:
    try:
        body = r.json()
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return f"{message or r.text[:200] or r.reason_phrase} (HTTP {r.status_code})"


class Client:
    def __init__(self, url: str, *, token: str | None = None,
                 verify: ssl.SSLContext | bool = True, timeout: float = 60) -> None:
        self.url = url
        # an idle connection is reused for 2 s at most: servers (uvicorn's default, 5 s) close
        # idle ones, and a request sent as that close arrives fails with "Server disconnected
        # without sending a response"; a fresh connection after a pause never meets that race
        self.http = httpx.Client(base_url=url, verify=verify,
                                 timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                                 limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS))
        self.headers: dict[str, str] = {}
        """What every call through this client carries (token, organization, environment);
        `http` itself stays bare, for requests that must carry none."""
        if token:
            self.use_token(token)

    def use_token(self, token: str) -> None:
        self.headers["Authorization"] = f"Bearer {token}"

    # --- signing in and choosing where to act -------------------------------------------------

    def login(self, username: str, password: str) -> str:
        try:
            r = self.send("POST", "/accounts/login", json={"username": username,
                                                           "password": password})
        except ApiError as exc:
            if exc.status == 401:  # ARM's plain-text `Unauthorized`
                raise ApiError(401, "invalid username or password (HTTP 401)") from None
            raise
        token = str(r.json()["access_token"])
        self.use_token(token)
        return token

    def login_client(self, client_id: str, client_secret: str) -> str:
        r = self.send("POST", "/accounts/api/v2/oauth2/token", json={
            "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": client_secret})
        token = str(r.json()["access_token"])
        self.use_token(token)
        return token

    def use_environment(self, wanted: str | None = None, org_id: str | None = None,
                        env_id: str | None = None) -> Environment:
        """Act in the environment named or numbered `wanted` (Production unless told)."""
        org_id = org_id or self.json("GET", "/accounts/api/users/me")["organization"]["id"]
        env_name = ""
        if not env_id:
            envs = self.json("GET", f"/accounts/api/organizations/{org_id}/environments")["data"]
            match = [e for e in envs if (wanted or "Production") in (e["name"], e["id"])]
            if not match:
                names = ", ".join(e["name"] for e in envs)
                raise ApiError(404, f"no environment {wanted or 'Production'!r}; there are: "
                                    f"{names}")
            env_id, env_name = match[0]["id"], match[0]["name"]
        self.headers["X-ANYPNT-ORG-ID"] = org_id
        self.headers["X-ANYPNT-ENV-ID"] = env_id
        return Environment(org_id, env_id, env_name)

    # --- requests ------------------------------------------------------------------------------

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer; ApiError for 400 and above, or when there is none."""
        headers = {**self.headers, **(kwargs.pop("headers", None) or {})}
        try:
            r = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach Corral at {self.url}: {exc}") from exc
        if r.status_code >= 400:
            raise ApiError(r.status_code, error_message(r))
        return r

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.send(method, path, **kwargs).json()

    def hybrid(self, method: str, path: str, **kwargs: Any) -> Any:
        """The `data` of a hybrid call's answer (None for an empty one)."""
        r = self.send(method, HYBRID + path, **kwargs)
        return r.json().get("data") if r.content else None

    # --- the resources (`client/resources.py`) ---------------------------------------------

    @functools.cached_property
    def apps(self) -> resources.Applications:
        return resources.Applications(self)

    @functools.cached_property
    def servers(self) -> resources.Servers:
        return resources.Servers(self)

    @functools.cached_property
    def groups(self) -> resources.Groups:
        return resources.Groups(self)

    @functools.cached_property
    def clusters(self) -> resources.Clusters:
        return resources.Clusters(self)

    @functools.cached_property
    def ca(self) -> resources.CertificateAuthority:
        return resources.CertificateAuthority(self)

    def stream(self, path: str, **kwargs: Any) -> Iterator[str]:
        """The lines of a streamed hybrid answer (server-sent events)."""
        try:
            with self.http.stream("GET", HYBRID + path, timeout=None,
                                  headers=self.headers, **kwargs) as r:
                if r.status_code >= 400:
                    r.read()
                    raise ApiError(r.status_code, error_message(r))
                yield from r.iter_lines()
        except httpx.HTTPError as exc:
            raise ApiError(0, f"stream from {self.url} broke: {exc}") from exc

    def close(self) -> None:
        self.http.close()
