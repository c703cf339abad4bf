"""Status aggregation rules of docs/api.md and ADR 0006."""

from __future__ import annotations

import pytest

from corral.domain.status import (
    ApplicationStatus,
    Instance,
    aggregate_application,
    aggregate_servers,
    application_status,
    target_status,
)


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


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "CREATED"),
        (["RUNNING", "DISCONNECTED"], "RUNNING"),  # ARM's words: no PARTIALLY_RUNNING
        (["DISCONNECTED", "DISCONNECTED"], "DISCONNECTED"),
        (["CREATED", "CREATED"], "CREATED"),
    ],
)
def test_target_status_in_arm_words(statuses: list[str], expected: str) -> None:
    assert target_status(statuses) == expected


ARM_WORDS = {"UNDEPLOYED", "STARTED", "STOPPED", "DEPLOYMENT_FAILED"}


def _status(*instances: tuple[str, bool] | tuple[str, bool, bool], desired: str = "STARTED",
            redeployed: bool = False, cluster: bool = False) -> ApplicationStatus:
    return application_status([Instance(*i) for i in instances], desired=desired,
                              redeployed=redeployed, cluster=cluster)


@pytest.mark.parametrize(
    ("instances", "cluster", "reported", "detailed"),
    [
        ([], False, "UNDEPLOYED", "UNDEPLOYED"),
        ([("DEPLOYING", True)], False, "UNDEPLOYED", "DEPLOYING"),
        ([("STARTED", True), ("STARTED", True)], False, "STARTED", "STARTED"),
        # it runs on one server, the other is still starting: not UNDEPLOYED (nothing that
        # runs reads so); `desiredStatus` says UPDATED until it is done
        ([("STARTED", True), ("STARTING", True)], False, "STARTED", "PARTIALLY_STARTED"),
        ([("STARTED", True), ("STOPPED", True)], False, "STOPPED", "PARTIALLY_STARTED"),
        ([("STARTED", True), ("DEPLOYMENT_FAILED", True)], False, "DEPLOYMENT_FAILED",
         "DEPLOYMENT_FAILED"),
        # a group server that is away keeps its last report and does not hold the others back
        ([("STARTED", True), ("UNDEPLOYED", False)], False, "STARTED", "PARTIALLY_STARTED"),
        # every server away: their last reports
        ([("STARTED", False), ("STARTED", False)], False, "STARTED", "STARTED"),
        # a cluster is STARTED while it runs on at least one node (ARM's documentation)
        ([("STARTED", True), ("STOPPED", True)], True, "STARTED", "PARTIALLY_STARTED"),
        ([("STARTED", True), ("DEPLOYMENT_FAILED", True)], True, "STARTED",
         "DEPLOYMENT_FAILED"),
        ([("STOPPING", True), ("STOPPED", True)], True, "STOPPED", "DEPLOYING"),
    ],
)
def test_application_status_in_arm_words(
    instances: list[tuple[str, bool]], cluster: bool, reported: str, detailed: str
) -> None:
    status = _status(*instances, cluster=cluster)
    assert (status.reported, status.detailed) == (reported, detailed)
    assert status.reported in ARM_WORDS
    assert status.started == (reported == "STARTED")


def test_desired_reads_updated_while_a_redeploy_settles() -> None:
    settling = [("STARTED", True), ("DEPLOYING", True), ("STARTING", False)]
    assert _status(*settling, redeployed=True).desired == "UPDATED"
    # a first deploy that runs on some servers only: not done either
    assert _status(*settling, redeployed=False).desired == "UPDATED"
    assert _status(("DEPLOYING", True), ("STARTING", True)).desired == "STARTED"  # none yet
    assert _status(*settling, redeployed=True, desired="STOPPED").desired == "STOPPED"
    # settled: every connected instance started or failed; the away one does not count
    done = [("STARTED", True), ("DEPLOYMENT_FAILED", True), ("DEPLOYING", False)]
    assert _status(*done, redeployed=True).desired == "STARTED"


def test_a_redeploy_reads_started_while_an_earlier_deployment_serves() -> None:
    """The rollout of a group of three whose first server fetches (then starts) the new
    version: the other two serve the old one all along, so it never reads UNDEPLOYED."""
    fetching = _status(("DEPLOYING", True, True), ("STARTED", True, True),
                       ("STARTED", True, True), redeployed=True)
    assert (fetching.reported, fetching.desired) == ("STARTED", "UPDATED")
    starting = _status(("STARTING", True, False), ("STARTED", True, True),
                       ("STARTED", True, True), redeployed=True)
    assert (starting.reported, starting.desired) == ("STARTED", "UPDATED")
    # one server alone, its old version running while the new one is fetched
    alone = _status(("DEPLOYING", True, True), redeployed=True)
    assert (alone.reported, alone.desired) == ("STARTED", "UPDATED")
    # nothing serves: the old one stopped and the new one not up yet
    assert _status(("STARTING", True, False), redeployed=True).reported == "UNDEPLOYED"
    # what was asked runs everywhere: done
    done = _status(("STARTED", True, True), ("STARTED", True, True), redeployed=True)
    assert (done.reported, done.desired) == ("STARTED", "STARTED")
