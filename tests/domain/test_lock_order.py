"""Changes of a group or cluster and the gateway's reports take their row locks in one order
(a target, its servers, then their instances), so that on PostgreSQL they wait their turn
instead of waiting on each other in a circle. The report's two halves are written here by
hand, as `agents.record_reports` writes them, with the change made in another transaction
between them. And a report that ends a deployment, a rollout's revert of it and a rollback
take the deployment after the servers, and leave each other's outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from corral import wire
from corral.controlplane import ControlPlane
from corral.db.models import AppInstance, Deployment, Rollout, Server, now_ms
from corral.db.session import transaction
from corral.domain import agents, clusters, deployments, history, rollouts, server_groups
from corral.domain.identity import Scope
from tests.api.conftest import Api
from tests.support import eventually


def _waiting_on_a_lock(plane: ControlPlane) -> int:
    with plane.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one())


def _behind(plane: ControlPlane, work: Callable[[Session], object],
            what: str) -> tuple[threading.Thread, list[BaseException]]:
    """`work` in a transaction of its own, on another thread, once it waits on a lock that the
    caller's open transaction holds. The caller joins the thread after its own transaction
    ends; what `work` raised is in the list."""
    failed: list[BaseException] = []

    def other() -> None:
        try:
            with transaction(plane.sessions) as s:
                work(s)
        except BaseException as exc:  # handed to the test
            failed.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    eventually(lambda: _waiting_on_a_lock(plane), lambda n: n >= 1 or not thread.is_alive(),
               what=what)
    return thread, failed


def _during_a_report(plane: ControlPlane, servers: list[int],
                     change: Callable[[Session], None]) -> list[BaseException]:
    """`change` in its own transaction, begun after a report locked the servers' rows and
    before it writes their instances."""
    with transaction(plane.sessions) as report:
        report.execute(update(Server).where(Server.id.in_(servers)).values(last_seen=now_ms()))
        thread, failed = _behind(plane, change, "the change waiting for the report")
        report.execute(update(AppInstance).where(AppInstance.server_id.in_(servers))
                       .values(time_updated=now_ms()))
    thread.join(30)
    return failed


def _site(deployment: int, status: str) -> wire.Report:
    """An agent's report of the application `site`."""
    return wire.Report(revision=1, applications=[wire.ApplicationReport(
        name="site", deploymentId=deployment, status=status)])


@pytest.fixture
def postgres_only(plane: ControlPlane) -> None:
    if plane.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: its transactions never wait on each other")


@pytest.mark.usefixtures("postgres_only")
@pytest.mark.parametrize("change", ["delete the group", "remove a server"])
def test_a_group_change_waits_for_a_report(api: Api, plane: ControlPlane, change: str) -> None:
    servers = [api.register("m1"), api.register("m2")]
    group = api.post("/serverGroups", json={"name": "g", "serverIds": servers}).json()["data"]
    api.deploy("site", group["id"])
    scope = Scope(api.org_id, api.env_id)

    def act(s: Session) -> None:
        if change == "delete the group":
            server_groups.delete_group(s, scope, group["id"])
        else:
            server_groups.remove_server(s, scope, group["id"], servers[1])

    assert _during_a_report(plane, servers, act) == []
    apps = api.get("/applications").json()["data"]
    assert sorted(a["target"]["id"] for a in apps) == (
        sorted(servers) if change == "delete the group" else sorted([group["id"], servers[1]]))


@pytest.mark.usefixtures("postgres_only")
def test_a_cluster_deleted_waits_for_a_report(api: Api, plane: ControlPlane) -> None:
    servers = [api.register("c1"), api.register("c2")]
    cluster = api.post("/clusters", json={
        "name": "k", "multicastEnabled": True,
        "servers": [{"serverId": s} for s in servers]}).json()["data"]
    api.deploy("site", cluster["id"])
    scope = Scope(api.org_id, api.env_id)
    assert _during_a_report(plane, servers,
                            lambda s: clusters.delete_cluster(s, scope, cluster["id"])) == []
    assert api.get(f"/clusters/{cluster['id']}").status_code == 404


@pytest.mark.usefixtures("postgres_only")
def test_a_report_does_not_undo_a_revert(api: Api, plane: ControlPlane) -> None:
    """A failure reported while a rollout reverts the same deployment: the report's settle
    waits for the revert and leaves it ROLLED_BACK. It used to write FAILED over it, so the
    history showed a deployment FAILED under a rollout REVERTED."""
    server = api.register("m1")
    app_id = api.deploy("site", server).json()["data"]["id"]
    with plane.sessions() as s:
        deployment = s.scalars(select(Deployment)
                               .where(Deployment.application_id == app_id)).one()
        assert deployment.state == history.OPEN
    failure = _site(deployment.number, "DEPLOYMENT_FAILED")

    def report(s: Session) -> None:
        assert agents.record_reports(s, [(server, failure)]) == 1

    with transaction(plane.sessions) as revert:
        history.end(revert, revert.get_one(Deployment, deployment.id), "ROLLED_BACK")
        revert.flush()
        thread, failed = _behind(plane, report, "the report waiting for the revert")
    thread.join(30)
    assert failed == []
    with plane.sessions() as s:
        assert s.get_one(Deployment, deployment.id).state == "ROLLED_BACK"
        assert s.scalars(select(AppInstance.last_reported_status)
                         .where(AppInstance.application_id == app_id)).one() == \
            "DEPLOYMENT_FAILED"


@pytest.mark.usefixtures("postgres_only")
def test_a_revert_waits_for_a_report_that_ends_its_deployment(api: Api,
                                                              plane: ControlPlane) -> None:
    """A rollout reverted while its server reports the new version failed. The report locks
    the server, and then ended the deployment (it now leaves that to the rollout); the revert
    ended the deployment, then bumped the servers' revisions. In those opposite orders
    PostgreSQL ended the revert as a deadlock (its loop tried again a second later); now the
    revert takes the servers first and waits."""
    import json

    from tests.api.conftest import make_zip

    servers = [api.register("r1"), api.register("r2")]
    group = api.post("/serverGroups", json={"name": "g", "serverIds": servers}).json()["data"]
    app_id = api.deploy("site", group["id"]).json()["data"]["id"]

    with transaction(plane.sessions) as s:
        agents.record_reports(s, [(sid, _site(1, "STARTED")) for sid in servers])
    r = api.patch(f"/applications/{app_id}", data={"rollout": json.dumps(
        {"maxParallel": 1, "autoRevert": True})}, files={"file": (
            "v2.zip", make_zip({"Procfile": "web: v2\n"}), "application/zip")})
    assert r.status_code == 200, r.text
    with plane.sessions() as s:
        rollout = s.scalars(select(Rollout).where(Rollout.application_id == app_id)).one()
        new = s.get_one(Deployment, rollout.history_id)
        assert rollout.updated == [servers[0]] and new.number == 2
    server, failure = servers[0], _site(new.number, "DEPLOYMENT_FAILED")

    def revert(s: Session) -> None:
        rollouts._revert(s, s.get_one(Rollout, rollout.id))

    with transaction(plane.sessions) as report:
        report.execute(update(Server).where(Server.id == server).values(last_seen=now_ms()))
        thread, failed = _behind(plane, revert, "the revert waiting for the report")
        assert agents.record_reports(report, [(server, failure)]) == 1
    thread.join(30)
    assert failed == []
    with plane.sessions() as s:
        assert s.get_one(Deployment, new.id).state == "ROLLED_BACK"


@pytest.mark.usefixtures("postgres_only")
def test_a_rollback_waits_for_a_report_that_ends_the_current_deployment(
        api: Api, plane: ControlPlane) -> None:
    """An API rollback while the server reports the current deployment started. The report
    locks the server, then the deployment it ends (SUCCEEDED); the rollback ended that
    deployment (ROLLED_BACK), then bumped the servers' revisions, and PostgreSQL ended one of
    the two as a deadlock. Now the rollback takes the servers first and waits; the current
    deployment ends ROLLED_BACK, as a rollback promises."""
    from tests.api.conftest import make_zip

    server = api.register("b1")
    app_id = api.deploy("site", server).json()["data"]["id"]
    with transaction(plane.sessions) as s:
        agents.record_reports(s, [(server, _site(1, "STARTED"))])
    r = api.patch(f"/applications/{app_id}", files={"file": (
        "v2.zip", make_zip({"Procfile": "web: v2\n"}), "application/zip")})
    assert r.status_code == 200, r.text
    scope = Scope(api.org_id, api.env_id)

    def rollback(s: Session) -> None:
        deployments.rollback(s, scope, app_id, box=plane.secrets, by="test")

    with transaction(plane.sessions) as report:
        report.execute(update(Server).where(Server.id == server).values(last_seen=now_ms()))
        thread, failed = _behind(plane, rollback, "the rollback waiting for the report")
        assert agents.record_reports(report, [(server, _site(2, "STARTED"))]) == 1
    thread.join(30)
    assert failed == []
    with plane.sessions() as s:
        states = dict(s.execute(select(Deployment.number, Deployment.state)
                                .where(Deployment.application_id == app_id)).all())
    assert states == {1: "SUCCEEDED", 2: "ROLLED_BACK", 3: history.OPEN}
