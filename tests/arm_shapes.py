"""The application object as a strict client decodes it.

Go clients declare `artifact.storageId` an `int` and read `serverArtifacts[].artifact`; the
mule-maven-plugin and anypoint-cli wait on ARM's status words. `check_answer` runs on every
application answer the API and end-to-end suites receive (`tests/api/conftest.Api` and
`tests/e2e/operator.Operator` call it), so any answer that would fail such a client fails the
test that received it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from jsonschema import Draft202012Validator


class Answer(Protocol):
    """An HTTP response of either client the suites use (httpx, or the test client's)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def json(self) -> Any: ...

ARTIFACT = {
    "type": "object",
    "required": ["id", "storageId", "name", "fileName", "fileChecksum", "fileSize",
                 "timeUpdated"],
    "properties": {
        "id": {"type": "integer"},
        "storageId": {"type": "integer"},
        "name": {"type": "string"},
        "fileName": {"type": "string"},
        "fileChecksum": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
        "fileSize": {"type": "integer"},
        "timeUpdated": {"type": "integer"},
    },
}
APPLICATION = {
    "type": "object",
    "required": ["id", "timeCreated", "timeUpdated", "name", "uptime", "artifact", "target",
                 "desiredStatus", "lastReportedStatus", "started", "configuration",
                 "serverArtifacts"],
    "properties": {
        "id": {"type": "integer"},
        "timeCreated": {"type": "integer"},
        "timeUpdated": {"type": "integer"},
        "name": {"type": "string"},
        "uptime": {"type": "integer"},
        "artifact": ARTIFACT,
        "target": {
            "type": "object",
            "required": ["id", "name", "type", "status"],
            "properties": {
                "id": {"type": "integer"},
                "type": {"enum": ["SERVER", "SERVER_GROUP", "CLUSTER"]},
                "status": {"enum": ["CREATED", "RUNNING", "DISCONNECTED"]},
            },
        },
        "desiredStatus": {"enum": ["STARTED", "STOPPED", "UPDATED", "UNDEPLOYED"]},
        "lastReportedStatus": {"enum": ["UNDEPLOYED", "STARTED", "STOPPED",
                                        "DEPLOYMENT_FAILED"]},
        "started": {"type": "boolean"},
        "configuration": {"type": "object"},
        "serverArtifacts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "serverId", "serverName", "artifactName", "artifact",
                             "deploymentId", "desiredStatus", "lastReportedStatus",
                             "timeCreated", "timeUpdated"],
                "properties": {
                    "id": {"type": "integer"},
                    "serverId": {"type": "integer"},
                    "serverName": {"type": "string"},
                    "artifactName": {"type": "string"},
                    "artifact": ARTIFACT,
                    "deploymentId": {"type": "integer"},
                    "desiredStatus": {"type": "string"},
                    "lastReportedStatus": {"type": "string"},
                    "timeCreated": {"type": "integer"},
                    "timeUpdated": {"type": "integer"},
                },
            },
        },
    },
}
VALIDATOR = Draft202012Validator(APPLICATION)
APPLICATION_PATH = re.compile(r"^(/hybrid/api/v1)?/applications(/\d+)?/?$")


def check_application(app: Any) -> None:
    errors = sorted(VALIDATOR.iter_errors(app), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(the object)"
        raise AssertionError(f"application {app.get('id') if isinstance(app, dict) else app}"
                             f" fails a strict client at {where}: {errors[0].message}")


def check_answer(path: str, r: Answer) -> None:
    """Check every application in a 2xx JSON answer to an applications call."""
    if not (200 <= r.status_code < 300 and APPLICATION_PATH.match(path.split("?")[0])
            and r.headers.get("content-type", "").startswith("application/json")):
        return
    data = r.json().get("data")
    for app in data if isinstance(data, list) else [data]:
        check_application(app)
