"""The API's resources as methods, so that no caller (the CLI, `plan`/`apply`, the bench, the
end-to-end tests) writes a path or rebuilds ARM's deploy form: applications, servers, server
groups and clusters. Each method is one call and answers the `data` ARM's API answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from corral.client import Client

PROPERTIES_SERVICE = "mule.agent.application.properties.service"

Rows = list[dict[str, Any]]
Lines = list[str]
Ids = list[int]
Members = list[tuple[int, str | None]]
"""(server id, its address or None)"""
Upload = tuple[str, BinaryIO | bytes]
"""(file name, the zip's bytes or an open file): what a deploy or redeploy sends."""


def configuration(name: str, properties: Mapping[str, str] | None = None,
                  secure: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """ARM's `configuration` carrying properties (and Corral's secure properties: a value
    sets one, None removes it)."""
    service: dict[str, Any] = {"applicationName": name, "properties": dict(properties or {})}
    if secure:
        service["secureProperties"] = dict(secure)
    return {PROPERTIES_SERVICE: service}


def _form(fields: Mapping[str, Any]) -> dict[str, str]:
    """Multipart text fields: objects as JSON text, as ARM's deployers send them."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()
            if v is not None}


class Applications:
    def __init__(self, client: Client) -> None:
        self.client = client

    def list(self, target_id: int | None = None, *, environment_id: str | None = None) -> Rows:
        """`environment_id`: another environment's (the caller's headers name one)."""
        params = {"targetId": target_id} if target_id is not None else None
        headers = {"X-ANYPNT-ENV-ID": environment_id} if environment_id else None
        return [dict(r) for r in self.client.hybrid("GET", "/applications", params=params,
                                                    headers=headers)]

    def get(self, app_id: int) -> dict[str, Any]:
        return dict(self.client.hybrid("GET", f"/applications/{app_id}"))

    def deploy(self, name: str, target_id: int, upload: Upload | None = None, *,
               configuration: Mapping[str, Any] | None = None,
               rollout: Mapping[str, Any] | None = None,
               source: int | None = None) -> dict[str, Any]:
        """A new application: `upload`ed (ARM's multipart form), or the stored artifact of
        application `source` (ARM's `applicationSource`, JSON)."""
        fields = {"artifactName": name, "targetId": str(target_id),
                  "configuration": configuration, "rollout": rollout}
        if source is not None:
            body = {k: v for k, v in fields.items() if v is not None}
            return dict(self.client.hybrid("POST", "/applications", json={
                **body, "targetId": target_id,
                "applicationSource": {"source": "HYBRID", "id": source}}))
        assert upload is not None, "a deploy sends a file or names a source"
        return dict(self.client.hybrid("POST", "/applications", data=_form(fields), files={
            "file": (upload[0], upload[1], "application/zip")}))

    def redeploy(self, app_id: int, upload: Upload | None = None, *,
                 configuration: Mapping[str, Any] | None = None,
                 rollout: Mapping[str, Any] | None = None,
                 source: int | None = None) -> dict[str, Any]:
        """A new deployment: a new file, another application's artifact (`source`), or the
        same artifact again; `configuration` replaces the properties (secure ones merge)."""
        fields = {"configuration": configuration, "rollout": rollout}
        path = f"/applications/{app_id}"
        if source is not None:
            body = {k: v for k, v in fields.items() if v is not None}
            return dict(self.client.hybrid("PATCH", f"{path}/artifact", json={
                **body, "applicationSource": {"source": "HYBRID", "id": source}}))
        if upload is not None:
            return dict(self.client.hybrid("PATCH", path, data=_form(fields), files={
                "file": (upload[0], upload[1], "application/zip")}))
        return dict(self.client.hybrid("PATCH", path, files={
            "id": (None, str(app_id)), **{k: (None, v) for k, v in _form(fields).items()}}))

    def set_status(self, app_id: int, status: str,
                   rollout: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"desiredStatus": status}
        if rollout:
            body["rollout"] = dict(rollout)
        return dict(self.client.hybrid("PATCH", f"/applications/{app_id}", json=body))

    def delete(self, app_id: int) -> None:
        self.client.hybrid("DELETE", f"/applications/{app_id}")

    def history(self, app_id: int) -> Rows:
        return [dict(r) for r in
                self.client.hybrid("GET", f"/applications/{app_id}/deployments")]

    def rollback(self, app_id: int, history_id: int | None = None,
                 rollout: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if history_id is not None:
            body["deploymentId"] = history_id
        if rollout:
            body["rollout"] = dict(rollout)
        return dict(self.client.hybrid("POST", f"/applications/{app_id}/rollback", json=body))

    def promote(self, app_id: int, history_id: int) -> dict[str, Any]:
        return dict(self.client.hybrid(
            "POST", f"/applications/{app_id}/deployments/{history_id}/promote"))

    def cancel(self, app_id: int, history_id: int) -> dict[str, Any]:
        return dict(self.client.hybrid(
            "POST", f"/applications/{app_id}/deployments/{history_id}/cancel"))

    def logs(self, app_id: int, params: Mapping[str, Any]) -> Lines:
        """The last lines of its log on one server (`serverId`, `lines`), from its agent."""
        return [str(line) for line in self.client.hybrid(
            "GET", f"/applications/{app_id}/logs", params=dict(params))]

    def secure_digests(self, app_id: int) -> dict[str, dict[str, str]]:
        """Each secure property's salted digest (operators and admins)."""
        return dict(self.client.hybrid("GET", f"/applications/{app_id}/secureProperties"))


class Servers:
    def __init__(self, client: Client) -> None:
        self.client = client

    def list(self) -> Rows:
        return [dict(r) for r in self.client.hybrid("GET", "/servers")]

    def get(self, server_id: int) -> dict[str, Any]:
        return dict(self.client.hybrid("GET", f"/servers/{server_id}"))

    def rename(self, server_id: int, name: str) -> None:
        self.client.hybrid("PATCH", f"/servers/{server_id}", json={"name": name})

    def delete(self, server_id: int) -> None:
        self.client.hybrid("DELETE", f"/servers/{server_id}")

    def renew_certificate(self, server_id: int) -> None:
        self.client.hybrid("POST", f"/servers/{server_id}/certificate")

    def registration_token(self, *, rotate: bool = False) -> str:
        return str(self.client.hybrid("POST" if rotate else "GET",
                                      "/servers/registrationToken"))

    def new_registration_token(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.client.hybrid("POST", "/servers/registrationTokens", json=dict(body)))


class Groups:
    def __init__(self, client: Client) -> None:
        self.client = client

    def list(self) -> Rows:
        return [dict(r) for r in self.client.hybrid("GET", "/serverGroups")]

    def get(self, group_id: int) -> dict[str, Any]:
        return dict(self.client.hybrid("GET", f"/serverGroups/{group_id}"))

    def create(self, name: str, server_ids: Ids) -> dict[str, Any]:
        return dict(self.client.hybrid("POST", "/serverGroups",
                                       json={"name": name, "serverIds": server_ids}))

    def rename(self, group_id: int, name: str) -> None:
        self.client.hybrid("PATCH", f"/serverGroups/{group_id}", json={"name": name})

    def add(self, group_id: int, server_id: int) -> dict[str, Any]:
        return dict(self.client.hybrid("POST", f"/serverGroups/{group_id}/servers/{server_id}"))

    def remove(self, group_id: int, server_id: int) -> None:
        self.client.hybrid("DELETE", f"/serverGroups/{group_id}/servers/{server_id}")

    def delete(self, group_id: int) -> None:
        self.client.hybrid("DELETE", f"/serverGroups/{group_id}")


class Clusters:
    def __init__(self, client: Client) -> None:
        self.client = client

    def list(self) -> Rows:
        return [dict(r) for r in self.client.hybrid("GET", "/clusters")]

    def get(self, cluster_id: int) -> dict[str, Any]:
        return dict(self.client.hybrid("GET", f"/clusters/{cluster_id}"))

    def create(self, name: str, multicast: bool,
               members: Members) -> dict[str, Any]:
        """`members`: (server id, its address or None)."""
        return dict(self.client.hybrid("POST", "/clusters", json={
            "name": name, "multicastEnabled": multicast,
            "servers": [{"serverId": s, **({"serverIp": ip} if ip else {})}
                        for s, ip in members]}))

    def change(self, cluster_id: int, **fields: Any) -> dict[str, Any]:
        """`name`, `multicastEnabled`."""
        return dict(self.client.hybrid("PATCH", f"/clusters/{cluster_id}", json=fields))

    def rename(self, cluster_id: int, name: str) -> None:
        self.change(cluster_id, name=name)

    def add(self, cluster_id: int, server_id: int, ip: str | None = None) -> dict[str, Any]:
        return dict(self.client.hybrid("POST", f"/clusters/{cluster_id}/servers", json={
            "serverId": server_id, **({"serverIp": ip} if ip else {})}))

    def move(self, cluster_id: int, server_id: int, ip: str) -> dict[str, Any]:
        """A member's new address."""
        return dict(self.client.hybrid("PATCH", f"/clusters/{cluster_id}/servers/{server_id}",
                                       json={"serverIp": ip}))

    def remove(self, cluster_id: int, server_id: int) -> None:
        self.client.hybrid("DELETE", f"/clusters/{cluster_id}/servers/{server_id}")

    def delete(self, cluster_id: int) -> None:
        self.client.hybrid("DELETE", f"/clusters/{cluster_id}")


class CertificateAuthority:
    """The CA that signs servers' certificates, and its rotation (admins; docs/certificates.md)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def status(self) -> dict[str, Any]:
        return dict(self.client.hybrid("GET", "/certificateAuthority"))

    def rotate(self) -> dict[str, Any]:
        return dict(self.client.hybrid("POST", "/certificateAuthority/rotate"))

    def retire(self, *, force: bool = False) -> dict[str, Any]:
        return dict(self.client.hybrid("POST", "/certificateAuthority/retire",
                                       json={"force": force}))
