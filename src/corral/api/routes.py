"""The REST API's part of the control plane's application: ARM's routes and its error bodies."""

from __future__ import annotations

from fastapi import FastAPI

from corral.api import (
    accounts,
    alerts,
    applications,
    armui,
    authorities,
    bodies,
    clusters,
    docs,
    errors,
    health,
    measurements,
    metrics,
    server_groups,
    servers,
    targets,
)
from corral.http_context import add_routes


def install(app: FastAPI) -> None:
    errors.install(app)
    for module in (health, metrics, accounts, servers, server_groups, clusters, applications,
                   measurements, alerts, targets, armui, authorities):
        add_routes(app, module.router)
    bodies.document_bodies(app)
    docs.install(app)
