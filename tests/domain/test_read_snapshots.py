"""A read-only transaction answers from one moment, the moment of its first statement, on
both databases: an answer read in several statements never mixes what it read before a
commit with what it read after."""

from __future__ import annotations

from sqlalchemy import select

from corral.controlplane import ControlPlane
from corral.db.models import Deployment
from corral.db.session import transaction
from corral.domain import applications, history
from corral.domain.identity import Scope
from tests.api.conftest import Api


def test_a_history_read_across_a_revert_shows_one_moment(api: Api, plane: ControlPlane) -> None:
    """The history reads the deployments, then their rollouts. Under PostgreSQL's READ
    COMMITTED a revert committed between the two, and the answer showed a rollout REVERTED
    under its deployment FAILED (the report's word, which the revert had replaced)."""
    server = api.register("m1")
    app_id = api.deploy("site", server).json()["data"]["id"]
    scope = Scope(api.org_id, api.env_id)
    with transaction(plane.readers) as reader:
        app = applications.get(reader, scope, app_id)  # the request's first statement
        with transaction(plane.sessions) as revert:
            deployment = revert.scalars(select(Deployment)
                                        .where(Deployment.application_id == app_id)).one()
            history.end(revert, deployment, "ROLLED_BACK")
        [during] = history.listing(reader, app)
    with transaction(plane.readers) as reader:
        [after] = history.listing(reader, applications.get(reader, scope, app_id))
    assert (during["state"], after["state"]) == (history.OPEN, "ROLLED_BACK")
