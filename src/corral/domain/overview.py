"""What the console's overview shows of one environment: counts by status, the busiest
servers, the latest alert firings and deployments. A handful of aggregate queries, whatever
the fleet's size."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from corral.db.models import AppInstance, Application, Deployment, Server
from corral.domain import alerts, measurements
from corral.domain.identity import Scope


def overview(session: Session, scope: Scope, interval: float) -> dict[str, Any]:
    env = scope.environment_id
    servers = dict(session.execute(select(Server.status, func.count())
                                   .where(Server.environment_id == env)
                                   .group_by(Server.status)).all())
    instances = dict(session.execute(
        select(AppInstance.last_reported_status, func.count())
        .join(Application, Application.id == AppInstance.application_id)
        .where(Application.environment_id == env)
        .group_by(AppInstance.last_reported_status)).all())
    names = dict(session.execute(select(Server.id, Server.name)
                                 .where(Server.environment_id == env)).all())
    since = int(time.time() * 1000) - int(max(interval, 1) * 3000)
    busiest = [{"id": sid, "name": names[sid], "cpu": cpu, "memory": memory}
               for sid, cpu, memory in measurements.busiest_servers(session, names, since)]
    deployed = session.execute(
        select(Deployment, Application.name).join(Application,
                                                  Application.id == Deployment.application_id)
        .where(Application.environment_id == env)
        .order_by(Deployment.id.desc()).limit(10)).all()
    return {"servers": servers, "instances": instances, "busiest": busiest,
            "alerts": alerts.recent_events(session, scope, 10),
            "deployments": [{"applicationId": d.application_id, "application": name,
                             "number": d.number, "kind": d.kind, "state": d.state,
                             "by": d.created_by, "startedAt": d.started_at}
                            for d, name in deployed]}
