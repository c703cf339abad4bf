"""The strict-client check that every application answer in the suites passes can fail."""

from __future__ import annotations

import copy

import pytest

from tests.arm_shapes import check_application

ARTIFACT = {"id": 3, "storageId": 3, "name": "web", "fileName": "web.zip",
            "fileChecksum": "a" * 40, "fileSize": 10, "timeUpdated": 1}
GOOD = {
    "id": 1, "timeCreated": 1, "timeUpdated": 1, "name": "web", "uptime": 0,
    "artifact": ARTIFACT,
    "target": {"id": 2, "name": "s", "type": "SERVER", "status": "RUNNING"},
    "desiredStatus": "UPDATED", "lastReportedStatus": "STARTED", "started": True,
    "configuration": {},
    "serverArtifacts": [{"id": 4, "serverId": 2, "serverName": "s", "artifactName": "web",
                         "artifact": ARTIFACT, "deploymentId": 2, "desiredStatus": "STARTED",
                         "lastReportedStatus": "DEPLOYING", "timeCreated": 1,
                         "timeUpdated": 1}],
}


def test_a_good_application_passes() -> None:
    check_application(GOOD)


@pytest.mark.parametrize("spoil", [
    lambda a: a["artifact"].__setitem__("storageId", "9f86d081"),
    lambda a: a["serverArtifacts"][0].pop("artifact"),
    lambda a: a.__setitem__("lastReportedStatus", "PARTIALLY_STARTED"),
    lambda a: a["target"].__setitem__("status", "PARTIALLY_RUNNING"),
    lambda a: a.__setitem__("id", "1"),
])
def test_what_a_strict_client_refuses_fails(spoil: object) -> None:
    app = copy.deepcopy(GOOD)
    spoil(app)  # type: ignore[operator]
    with pytest.raises(AssertionError, match="fails a strict client"):
        check_application(app)
