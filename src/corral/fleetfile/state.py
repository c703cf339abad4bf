"""What an environment holds now, read through the public API with the caller's own token:
servers, server groups, clusters and applications by name."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from corral.client import Client
from corral.client.resources import PROPERTIES_SERVICE as SERVICE


class StateRefused(Exception):
    """The environment holds something the file cannot name unambiguously."""


@dataclass
class Current:
    servers: dict[str, dict[str, Any]]
    groups: dict[str, dict[str, Any]]
    clusters: dict[str, dict[str, Any]]
    applications: dict[str, dict[str, Any]]

    def target(self, name: str) -> dict[str, Any] | None:
        """A standalone server, a group or a cluster of that name."""
        return self.groups.get(name) or self.clusters.get(name) or self.servers.get(name)


def read(client: Client) -> Current:
    servers = _by_name(client.servers.list(), "server")
    groups = _by_name(client.groups.list(), "server group")
    clusters = _by_name(client.clusters.list(), "cluster")
    apps = _by_name(client.apps.list(), "application")
    return Current(servers, groups, clusters, apps)


def _by_name(found: Iterable[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    named: dict[str, dict[str, Any]] = {}
    for item in found:
        if item["name"] in named:
            raise StateRefused(f"the environment has two of {kind} {item['name']!r} (ids "
                               f"{named[item['name']]['id']} and {item['id']}); a fleet file "
                               "names each once: rename or delete one first")
        named[item["name"]] = item
    return named


def properties(app: dict[str, Any]) -> dict[str, str]:
    service = (app.get("configuration") or {}).get(SERVICE) or {}
    return {str(k): str(v) for k, v in (service.get("properties") or {}).items()}


def secure_names(app: dict[str, Any]) -> list[str]:
    service = (app.get("configuration") or {}).get(SERVICE) or {}
    return sorted(service.get("secureProperties") or {})


def desired_status(app: dict[str, Any]) -> str:
    """STARTED or STOPPED as the file says it (ARM's UPDATED is a STARTED one settling)."""
    return "STOPPED" if app["desiredStatus"] == "STOPPED" else "STARTED"


class Sources:
    """Where a by-reference artifact is stored: another application's, by name (in this or
    another environment of the organization), or any application's by checksum. Each
    environment is listed once."""

    def __init__(self, client: Client, current: Current) -> None:
        self.client = client
        self.current = current
        self._environments: dict[str, str] | None = None
        self._listed: dict[str, list[dict[str, Any]]] = {}

    def environments(self) -> dict[str, str]:
        """Name → id, of every environment the caller may list."""
        if self._environments is None:
            org = self.client.headers["X-ANYPNT-ORG-ID"]
            found = self.client.json("GET", f"/accounts/api/organizations/{org}/environments")
            self._environments = {e["name"]: e["id"] for e in found["data"]}
        return self._environments

    def _apps_in(self, environment: str) -> list[dict[str, Any]]:
        if environment not in self._listed:
            ident = self.environments().get(environment)
            if ident is None:
                raise StateRefused(f"no environment {environment!r}")
            self._listed[environment] = self.client.apps.list(environment_id=ident)
        return self._listed[environment]

    def by_name(self, name: str, environment: str | None) -> tuple[int, str]:
        """(id, sha256) of application `name` (in `environment`, else the file's)."""
        apps = list(self.current.applications.values()) if environment is None \
            else self._apps_in(environment)
        found = [a for a in apps if a["name"] == name]
        where = environment or "this environment"
        if len(found) != 1:
            raise StateRefused(f"{'no' if not found else 'more than one'} application "
                               f"{name!r} in {where} to take the artifact of")
        return int(found[0]["id"]), str(found[0]["artifact"]["sha256"])

    def by_checksum(self, sha256: str) -> tuple[int, str]:
        """An application holding the artifact `sha256`: this environment's first."""
        mine = self.client.headers.get("X-ANYPNT-ENV-ID")
        for app in self.current.applications.values():
            if app["artifact"].get("sha256") == sha256:
                return int(app["id"]), sha256
        for name, ident in self.environments().items():
            if ident == mine:
                continue
            for app in self._apps_in(name):
                if app["artifact"].get("sha256") == sha256:
                    return int(app["id"]), sha256
        raise StateRefused(f"no application the caller may read holds the artifact "
                           f"sha256 {sha256[:12]}…")
