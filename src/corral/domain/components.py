"""Agent components of a target (ARM's tracking, analytics and logging services).

ARM's CLI reads and sets them (`modify --insight/--log`, `copy`). Corral keeps each target's
settings so those commands work and round-trip. The logging service's levels reach the
applications (`CORRAL_LOG_LEVELS` and a file: README, "Servers and agents"); tracking and
analytics are stored only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from corral.db.models import Target, TargetComponent
from corral.domain import desired_state
from corral.domain.configuration import LOGGING_SERVICE as LOGGING
from corral.domain.configuration import check_log_levels
from corral.domain.identity import Scope
from corral.domain.names import as_id
from corral.errors import InvalidInput, NotFound

DEFAULTS: dict[str, tuple[bool, dict[str, Any]]] = {
    "mule.agent.tracking.handler.analytics": (False, {}),
    "mule.agent.tracking.service": (False, {"trackedApplications": []}),
    LOGGING: (True, {"applicationLogLevels": []}),
}


def _target(session: Session, scope: Scope, target_id: int) -> Target:
    target = session.get(Target, target_id) if as_id(target_id) is not None else None
    if target is None or target.environment_id != scope.environment_id:
        raise NotFound(f"target {target_id} not found")
    return target


def list_components(session: Session, scope: Scope, target_id: int) -> list[TargetComponent]:
    target = _target(session, scope, target_id)
    have = {c.name: c for c in session.scalars(
        select(TargetComponent).where(TargetComponent.target_id == target.id))}
    for name, (enabled, configuration) in DEFAULTS.items():
        if name not in have:
            have[name] = TargetComponent(target_id=target.id, name=name, enabled=enabled,
                                         configuration=dict(configuration))
            session.add(have[name])
    session.flush()
    return sorted(have.values(), key=lambda c: c.id)


def update_component(session: Session, scope: Scope, target_id: int, component_id: int,
                     body: dict[str, Any]) -> TargetComponent:
    list_components(session, scope, target_id)
    component = session.get(TargetComponent, component_id) \
        if as_id(component_id) is not None else None
    if component is None or component.target_id != target_id:
        raise NotFound(f"component {component_id} not found on target {target_id}")
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise InvalidInput("enabled must be true or false")
        component.enabled = body["enabled"]
    if "configuration" in body:
        if not isinstance(body["configuration"], dict):
            raise InvalidInput("configuration must be an object")
        configuration = {**component.configuration, **body["configuration"]}
        if component.name == LOGGING:
            check_log_levels(configuration.get("applicationLogLevels"))
        component.configuration = configuration
    if component.name == LOGGING:  # what the target's applications are told changes
        desired_state.changed(session, servers=[target_id], targets=[target_id])
    return component
