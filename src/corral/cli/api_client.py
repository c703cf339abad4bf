"""The CLI's HTTP client: the active profile's URL, token, org and environment; ARM's error
bodies turned into one-line messages; targets and applications found by name or id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from corral.cli.output import fail
from corral.cli.profiles import Config, Profile, trust

HYBRID = "/hybrid/api/v1"


class Api:
    def __init__(self, profile: Profile, *, need_env: bool = True) -> None:
        if not profile.token:
            fail("not logged in; run `corral login` (or set CORRAL_TOKEN)")
        self.profile = profile
        self.http = httpx.Client(
            base_url=profile.url,
            timeout=httpx.Timeout(60, connect=10),
            verify=trust(profile.ca_cert),
            headers={"Authorization": f"Bearer {profile.token}"},
        )
        if need_env:
            self._resolve_env()

    @classmethod
    def from_config(cls, *, need_env: bool = True) -> Api:
        return cls(Config.load().active(), need_env=need_env)

    def _resolve_env(self) -> None:
        p = self.profile
        if not p.org_id:
            p.org_id = self.get_json("/accounts/api/users/me")["organization"]["id"]
        if not p.env_id:
            envs = self.get_json(f"/accounts/api/organizations/{p.org_id}/environments")["data"]
            wanted = p.env_name or "Production"
            match = [e for e in envs if wanted in (e["name"], e["id"])]
            if not match:
                names = ", ".join(e["name"] for e in envs)
                fail(f"no environment {wanted!r}; there are: {names}")
            p.env_id, p.env_name = match[0]["id"], match[0]["name"]
        self.http.headers["X-ANYPNT-ORG-ID"] = p.org_id or ""
        self.http.headers["X-ANYPNT-ENV-ID"] = p.env_id or ""

    # --- requests ----------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach Corral at {self.profile.url}: {exc}")
        if r.status_code >= 400:
            fail(error_message(r))
        return r

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def hybrid(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.request(method, HYBRID + path, **kwargs)
        return r.json().get("data") if r.content else None

    def stream(self, path: str, **kwargs: Any) -> Iterator[str]:
        try:
            with self.http.stream("GET", HYBRID + path, timeout=None, **kwargs) as r:
                if r.status_code >= 400:
                    r.read()
                    fail(error_message(r))
                yield from r.iter_lines()
        except httpx.HTTPError as exc:
            fail(f"stream from {self.profile.url} broke: {exc}")

    # --- finding things by name or id ------------------------------------------------------

    def targets(self) -> list[dict[str, Any]]:
        return [*self.hybrid("GET", "/servers"), *self.hybrid("GET", "/serverGroups"),
                *self.hybrid("GET", "/clusters")]

    def find_target(self, ident: str, kinds: tuple[str, ...] = ()) -> dict[str, Any]:
        found = [t for t in self.targets()
                 if (str(t["id"]) == ident or t["name"] == ident)
                 and (not kinds or t["type"] in kinds)]
        by_id = [t for t in found if str(t["id"]) == ident]
        if by_id:
            return by_id[0]
        what = " or ".join(k.lower().replace("_", " ") for k in kinds) or "target"
        if not found:
            fail(f"no {what} named or numbered {ident!r}")
        if len(found) > 1:
            listing = ", ".join(f"{t['type'].lower()} {t['id']}" for t in found)
            fail(f"{ident!r} names several targets ({listing}); use the id")
        return found[0]

    def find_app(self, ident: str, target: str | None = None) -> dict[str, Any]:
        if ident.isdigit():
            r = self.http.get(f"{HYBRID}/applications/{ident}")
            if r.status_code == 200:
                return r.json()["data"]  # type: ignore[no-any-return]
        apps = self.hybrid("GET", "/applications")
        found = [a for a in apps if a["name"] == ident]
        if target is not None:
            t = self.find_target(target)
            found = [a for a in found if a["target"]["id"] == t["id"]]
        if not found:
            fail(f"no application named or numbered {ident!r}")
        if len(found) > 1:
            listing = ", ".join(f"{a['id']} on {a['target']['name']}" for a in found)
            fail(f"{ident!r} names several applications ({listing}); use the id or --target")
        return found[0]


def error_message(r: httpx.Response) -> str:
    try:
        body = r.json()
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return f"{message or r.text[:200] or r.reason_phrase} (HTTP {r.status_code})"
