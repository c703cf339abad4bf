"""Status aggregation rules of API.md."""

from __future__ import annotations

import pytest

from corral.domain.status import aggregate_application, aggregate_servers


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "UNDEPLOYED"),
        (["UNDEPLOYED", "UNDEPLOYED"], "UNDEPLOYED"),
        (["STARTED", "STARTED"], "STARTED"),
        (["STARTED", "DEPLOYMENT_FAILED"], "DEPLOYMENT_FAILED"),
        (["STARTED", "STOPPED"], "PARTIALLY_STARTED"),
        (["STARTED", "UNDEPLOYED"], "PARTIALLY_STARTED"),
        (["STOPPED", "STOPPED"], "STOPPED"),
        (["DEPLOYING", "STOPPED"], "DEPLOYING"),
        (["UNDEPLOYED", "STOPPED"], "STOPPED"),
    ],
)
def test_application(statuses: list[str], expected: str) -> None:
    assert aggregate_application(statuses) == expected


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "CREATED"),
        (["RUNNING", "RUNNING"], "RUNNING"),
        (["RUNNING", "DISCONNECTED"], "PARTIALLY_RUNNING"),
        (["CREATED", "CREATED"], "CREATED"),
        (["CREATED", "DISCONNECTED"], "DISCONNECTED"),
    ],
)
def test_servers(statuses: list[str], expected: str) -> None:
    assert aggregate_servers(statuses) == expected
