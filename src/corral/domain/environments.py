"""Renaming and deleting environments (admins; kloudtek's `Environment.java` calls both). An
environment that still holds anything deployable is never deleted: its servers would lose
their control plane without a word."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from corral.db.models import (
    Alert,
    Application,
    ConnectedApp,
    Environment,
    RegistrationToken,
    Target,
    User,
)
from corral.domain.accounts import get_environment, list_environments
from corral.domain.names import check_name
from corral.errors import Conflict


def with_counts(session: Session, organization_id: str) -> list[dict[str, Any]]:
    """Each environment with how many targets and applications it holds (what keeps it from
    being deleted)."""
    def count(model: type[Target | Application], env_id: str) -> int:
        return session.scalar(select(func.count()).select_from(model)
                              .where(model.environment_id == env_id)) or 0
    return [{"id": e.id, "name": e.name, "type": e.type, "targets": count(Target, e.id),
             "applications": count(Application, e.id)}
            for e in list_environments(session, organization_id)]


def rename(session: Session, organization_id: str, environment_id: str,
           name: object) -> Environment:
    env = get_environment(session, organization_id, environment_id)
    new_name = check_name(name, "environment name")
    if new_name != env.name:
        taken = session.scalar(select(Environment.id).where(
            Environment.organization_id == organization_id, Environment.name == new_name))
        if taken is not None:
            raise Conflict(f"an environment named {new_name!r} already exists")
        env.name = new_name
    return env


def delete_environment(session: Session, organization_id: str, environment_id: str) -> None:
    """Only an empty one, and never the last: its registration tokens and alerts go with it,
    and users and connected apps limited to it keep their other environments (the audit trail
    keeps its events)."""
    env = get_environment(session, organization_id, environment_id)
    targets = session.scalar(select(func.count(Target.id))
                             .where(Target.environment_id == env.id)) or 0
    apps = session.scalar(select(func.count(Application.id))
                          .where(Application.environment_id == env.id)) or 0
    if targets or apps:
        raise Conflict(f"environment {env.name!r} still holds {targets} servers, server groups "
                       f"or clusters and {apps} applications; delete them first")
    if len(list_environments(session, organization_id)) <= 1:
        raise Conflict(f"environment {env.name!r} is the organization's last environment")
    session.execute(delete(RegistrationToken).where(RegistrationToken.environment_id == env.id))
    for alert in session.scalars(select(Alert).where(Alert.environment_id == env.id)):
        session.delete(alert)
    principals: list[User | ConnectedApp] = [
        *session.scalars(select(User).where(User.organization_id == organization_id)),
        *session.scalars(select(ConnectedApp).where(
            ConnectedApp.organization_id == organization_id))]
    for principal in principals:
        if env.id in (principal.environment_ids or []):
            principal.environment_ids = [e for e in principal.environment_ids or []
                                         if e != env.id]
    session.flush()
    session.delete(env)
