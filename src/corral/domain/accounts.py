"""Organizations, environments, users, connected apps and bearer tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from corral.db.models import (
    AccessToken,
    ConnectedApp,
    Environment,
    Organization,
    User,
    now_ms,
)
from corral.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from corral.domain.names import check_name

_hasher = PasswordHasher()
ENVIRONMENT_TYPES = ("production", "sandbox", "design")


def hash_secret(value: str) -> str:
    return _hasher.hash(value)


def verify_secret(stored_hash: str, value: str) -> bool:
    try:
        return _hasher.verify(stored_hash, value)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """Tokens carry ≥ 256 random bits, so a plain SHA-256 is a safe at-rest form."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a bearer token speaks for."""

    organization_id: str
    token_hash: str
    expires_at: int
    user_id: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class Scope:
    """The organization and environment a hybrid call acts in."""

    organization_id: str
    environment_id: str


# --- bootstrap ---------------------------------------------------------------------------


def bootstrap(
    session: Session, *, organization_name: str, admin_username: str, admin_password: str | None
) -> str | None:
    """Create the organization, its two environments and the admin on first start.

    Returns the generated admin password when one had to be made, else None."""
    if session.scalar(select(Organization.id).limit(1)) is not None:
        return None
    org = Organization(name=organization_name)
    session.add(org)
    session.flush()
    session.add_all(
        [
            Environment(organization_id=org.id, name="Production", type="production"),
            Environment(organization_id=org.id, name="Sandbox", type="sandbox"),
        ]
    )
    generated = None
    if not admin_password:
        generated = admin_password = secrets.token_urlsafe(18)
    create_user(session, org.id, admin_username, admin_password, first_name="Admin")
    return generated


def default_organization(session: Session) -> Organization:
    org = session.scalar(select(Organization).order_by(Organization.created_at).limit(1))
    if org is None:
        raise NotFound("no organization exists yet; start the control plane once")
    return org


# --- users, environments, connected apps -----------------------------------------------


def create_user(
    session: Session,
    organization_id: str,
    username: str,
    password: str,
    *,
    first_name: str = "",
    last_name: str = "",
    email: str = "",
) -> User:
    username = check_name(username, "username")
    if len(password) < 8:
        raise InvalidInput("password must be at least 8 characters")
    if session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"a user named {username!r} already exists")
    user = User(
        organization_id=organization_id,
        username=username,
        password_hash=hash_secret(password),
        first_name=first_name,
        last_name=last_name,
        email=email,
    )
    session.add(user)
    session.flush()
    return user


def create_environment(
    session: Session, organization_id: str, name: str, env_type: str = "sandbox"
) -> Environment:
    name = check_name(name, "environment name")
    if env_type not in ENVIRONMENT_TYPES:
        raise InvalidInput(f"environment type must be one of {', '.join(ENVIRONMENT_TYPES)}")
    exists = session.scalar(
        select(Environment.id).where(
            Environment.organization_id == organization_id, Environment.name == name
        )
    )
    if exists:
        raise Conflict(f"an environment named {name!r} already exists")
    env = Environment(organization_id=organization_id, name=name, type=env_type)
    session.add(env)
    session.flush()
    return env


def list_environments(session: Session, organization_id: str) -> list[Environment]:
    return list(
        session.scalars(
            select(Environment)
            .where(Environment.organization_id == organization_id)
            .order_by(Environment.created_at, Environment.name)
        )
    )


def get_environment(session: Session, organization_id: str, environment_id: str) -> Environment:
    env = session.get(Environment, environment_id)
    if env is None or env.organization_id != organization_id:
        raise NotFound(f"environment {environment_id} not found")
    return env


def create_connected_app(
    session: Session, organization_id: str, name: str
) -> tuple[ConnectedApp, str]:
    """Returns the app and its secret; the secret is shown once and kept only as a hash."""
    name = check_name(name, "connected app name")
    secret = secrets.token_urlsafe(32)
    app = ConnectedApp(
        client_id=secrets.token_hex(16),
        organization_id=organization_id,
        name=name,
        secret_hash=hash_secret(secret),
    )
    session.add(app)
    session.flush()
    return app, secret


# --- tokens --------------------------------------------------------------------------------


def _issue_token(
    session: Session,
    organization_id: str,
    ttl_seconds: int,
    *,
    user_id: str | None = None,
    client_id: str | None = None,
) -> str:
    token = secrets.token_urlsafe(32)
    now = now_ms()
    session.add(
        AccessToken(
            token_hash=token_digest(token),
            organization_id=organization_id,
            user_id=user_id,
            client_id=client_id,
            created_at=now,
            expires_at=now + ttl_seconds * 1000,
        )
    )
    # Expired tokens are useless; sweep them as new ones are made.
    session.execute(delete(AccessToken).where(AccessToken.expires_at < now))
    return token


def login(session: Session, username: str, password: str, ttl_seconds: int) -> str:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not verify_secret(user.password_hash, password):
        raise Unauthenticated("invalid username or password")
    return _issue_token(session, user.organization_id, ttl_seconds, user_id=user.id)


def client_credentials(
    session: Session, client_id: str, client_secret: str, ttl_seconds: int
) -> str:
    app = session.get(ConnectedApp, client_id)
    if app is None or not verify_secret(app.secret_hash, client_secret):
        raise Unauthenticated("invalid client_id or client_secret")
    return _issue_token(session, app.organization_id, ttl_seconds, client_id=app.client_id)


def authenticate(session: Session, token: str | None) -> Principal:
    if not token:
        raise Unauthenticated("missing bearer token")
    row = session.get(AccessToken, token_digest(token))
    if row is None or row.expires_at <= now_ms():
        raise Unauthenticated("invalid or expired token")
    return Principal(
        organization_id=row.organization_id,
        token_hash=row.token_hash,
        expires_at=row.expires_at,
        user_id=row.user_id,
        client_id=row.client_id,
    )


def logout(session: Session, principal: Principal) -> None:
    session.execute(delete(AccessToken).where(AccessToken.token_hash == principal.token_hash))


def resolve_scope(
    session: Session, principal: Principal, org_id: str | None, env_id: str | None
) -> Scope:
    """Check the org/env headers of a hybrid call against what the token may use."""
    if org_id and org_id != principal.organization_id:
        raise Forbidden(f"this token may not act in organization {org_id}")
    if not env_id:
        raise InvalidInput("X-ANYPNT-ENV-ID header is required")
    env = session.get(Environment, env_id)
    if env is None or env.organization_id != principal.organization_id:
        raise Forbidden(f"this token may not act in environment {env_id}")
    return Scope(principal.organization_id, env.id)
