"""The CLI's view of `corral.client`: the active profile's URL, token, org and environment;
an `ApiError` becomes a one-line message and exit 1; targets and applications found by name
or id."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import httpx

from corral.cli.output import fail
from corral.cli.profiles import Config, Profile, trust
from corral.client import ApiError, Client


class _Refusing:
    """A resource of `corral.client` whose refusals end the command with ARM's message (exit 1),
    as `Api.hybrid` does for a single call."""

    def __init__(self, resource: object) -> None:
        self._resource = resource

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._resource, name)

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except ApiError as exc:
                fail(exc.message)
        return call


class Api:
    def __init__(self, profile: Profile, *, need_env: bool = True) -> None:
        if not profile.token:
            fail("not logged in; run `corral login` (or set CORRAL_TOKEN)")
        self.profile = profile
        self.client = Client(profile.url, token=profile.token, verify=trust(profile.ca_cert))
        if need_env:
            try:
                env = self.client.use_environment(profile.env_name if not profile.env_id
                                                  else None, profile.org_id, profile.env_id)
            except ApiError as exc:
                fail(exc.message)
            profile.org_id, profile.env_id = env.org_id, env.env_id
            profile.env_name = env.env_name or profile.env_name

    @classmethod
    def from_config(cls, *, need_env: bool = True) -> Api:
        return cls(Config.load().active(), need_env=need_env)

    # --- the resources (`corral.client.resources`), refusals ending the command --------------

    @functools.cached_property
    def apps(self) -> Any:
        return _Refusing(self.client.apps)

    @functools.cached_property
    def servers(self) -> Any:
        return _Refusing(self.client.servers)

    @functools.cached_property
    def groups(self) -> Any:
        return _Refusing(self.client.groups)

    @functools.cached_property
    def clusters(self) -> Any:
        return _Refusing(self.client.clusters)

    @functools.cached_property
    def ca(self) -> Any:
        return _Refusing(self.client.ca)

    # --- requests ----------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.client.send(method, path, **kwargs)
        except ApiError as exc:
            fail(exc.message)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def hybrid(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self.client.hybrid(method, path, **kwargs)
        except ApiError as exc:
            fail(exc.message)

    def stream(self, path: str, **kwargs: Any) -> Iterator[str]:
        try:
            yield from self.client.stream(path, **kwargs)
        except ApiError as exc:
            fail(exc.message)

    # --- finding things by name or id ------------------------------------------------------

    def targets(self) -> list[dict[str, Any]]:
        return [*self.servers.list(), *self.groups.list(), *self.clusters.list()]

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
            try:
                return self.client.apps.get(int(ident))
            except ApiError:
                pass  # a name made of digits
        apps = self.apps.list()
        found = [a for a in apps if a["name"] == ident]
        if target is not None:
            t = self.find_target(target)
            found = [a for a in found if a["target"]["id"] == t["id"]]
        if not found:
            fail(f"no application named or numbered {ident!r}")
        if len(found) > 1:
            listing = ", ".join(f"{a['id']} on {a['target']['name']}" for a in found)
            fail(f"{ident!r} names several applications ({listing}); use the id or --target")
        only: dict[str, Any] = found[0]
        return only
