"""Organizations, environments, users, connected apps and bearer tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
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
from corral.domain.identity import ROLES, Principal, Scope
from corral.domain.names import check_name, check_text
from corral.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

PASSWORD_HASHERS = {
    # RFC 9106's second recommended choice (its first needs 2 GiB a hash): 64 MiB, 3 passes
    "rfc9106": PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4),
    # OWASP's minimum for Argon2id: 19 MiB, 2 passes, one lane; about a sixth of the CPU
    "owasp": PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1),
}
"""`CORRAL_PASSWORD_HASH`. A hash carries its parameters, so one made under either profile is
verified under both: changing the setting takes effect as passwords are next set."""
_hasher = PASSWORD_HASHERS["rfc9106"]
ENVIRONMENT_TYPES = ("production", "sandbox", "design")
"""viewer reads; operator also changes servers, tokens, groups, clusters and applications;
admin also users, connected apps and environments."""
MAX_PASSWORD = 1024
_dummy_hash: str | None = None


def use_password_hashing(profile: str) -> None:
    """New passwords and client secrets are hashed with this profile of `PASSWORD_HASHERS`
    (set once per process, from the settings, when the control plane opens)."""
    global _hasher, _dummy_hash
    if PASSWORD_HASHERS[profile] is not _hasher:
        _hasher, _dummy_hash = PASSWORD_HASHERS[profile], None


def hash_secret(value: str) -> str:
    return _hasher.hash(value)


def verify_secret(stored_hash: str | None, value: str) -> bool:
    """Constant work whether or not the name exists: an unknown one is checked against a dummy
    hash, so timing does not reveal who has an account."""
    global _dummy_hash
    if stored_hash is None:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
        stored_hash = _dummy_hash
    try:
        return _hasher.verify(stored_hash, value)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """Tokens carry ≥ 256 random bits, so a plain SHA-256 is a safe at-rest form."""
    return hashlib.sha256(token.encode()).hexdigest()


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
    create_user(session, org.id, admin_username, admin_password, first_name="Admin", role="admin")
    return generated


def has_organization(session: Session) -> bool:
    return session.scalar(select(Organization.id).limit(1)) is not None


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
    role: str = "viewer",
    environment_ids: list[str] | None = None,
) -> User:
    username = check_name(username, "username")
    if session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"a user named {username!r} already exists")
    user = User(
        organization_id=organization_id,
        username=username,
        password_hash=hash_secret(check_password(password)),
        first_name=check_text(first_name, "firstName"),
        last_name=check_text(last_name, "lastName"),
        email=check_text(email, "email"),
        role=check_role(role),
        environment_ids=check_environments(session, organization_id, environment_ids),
    )
    session.add(user)
    session.flush()
    return user


def check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < 8:
        raise InvalidInput("password must be at least 8 characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password must be at most {MAX_PASSWORD} characters")
    return check_text(password, "password", max_length=MAX_PASSWORD)


def check_role(role: object) -> str:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    return str(role)


def check_environments(
    session: Session, organization_id: str, environment_ids: list[str] | None
) -> list[str] | None:
    """None means every environment; otherwise each id must be one of the organization's."""
    if environment_ids is None:
        return None
    known = {e.id for e in list_environments(session, organization_id)}
    wanted = list(dict.fromkeys(environment_ids))
    unknown = [e for e in wanted if e not in known]
    if unknown:
        raise InvalidInput(f"unknown environment {unknown[0]!r}")
    return wanted


def list_users(session: Session, organization_id: str) -> list[User]:
    return list(session.scalars(
        select(User).where(User.organization_id == organization_id).order_by(User.created_at)))


def get_user(session: Session, organization_id: str, user_id: str) -> User:
    user = session.get(User, user_id) if isinstance(user_id, str) and len(user_id) <= 64 else None
    if user is None or user.organization_id != organization_id:
        raise NotFound(f"user {user_id} not found")
    return user


def update_user(
    session: Session,
    organization_id: str,
    user_id: str,
    *,
    role: str | None = None,
    enabled: bool | None = None,
    password: str | None = None,
    environment_ids: list[str] | None | object = ...,
) -> User:
    """An admin changes a user's role, environments, password or whether it may sign in.
    Disabling a user or resetting its password ends its tokens at once."""
    user = get_user(session, organization_id, user_id)
    new_role = check_role(role) if role is not None else user.role
    new_enabled = user.enabled if enabled is None else bool(enabled)
    if user.role == "admin" and user.enabled and (new_role != "admin" or not new_enabled):
        _keep_an_admin(session, organization_id, user.id)
    _set_rights(session, organization_id, user, new_role, new_enabled, environment_ids)
    if password is not None:
        user.password_hash = hash_secret(check_password(password))
    if not new_enabled or password is not None:
        session.execute(delete(AccessToken).where(AccessToken.user_id == user.id))
    session.flush()
    return user


def _set_rights(
    session: Session, organization_id: str, principal: User | ConnectedApp, role: str | None,
    enabled: bool | None, environment_ids: list[str] | None | object,
) -> None:
    """Role, enabled and environments, the same for a user and a connected app; `...` leaves
    the environments as they are (None means every environment)."""
    if role is not None:
        principal.role = check_role(role)
    if enabled is not None:
        principal.enabled = bool(enabled)
    if environment_ids is not ...:
        principal.environment_ids = check_environments(
            session, organization_id, environment_ids)  # type: ignore[arg-type]


def delete_user(session: Session, organization_id: str, user_id: str) -> None:
    user = get_user(session, organization_id, user_id)
    if user.role == "admin" and user.enabled:
        _keep_an_admin(session, organization_id, user.id)
    session.execute(delete(AccessToken).where(AccessToken.user_id == user.id))
    session.delete(user)
    session.flush()


def _keep_an_admin(session: Session, organization_id: str, leaving_id: str) -> None:
    others = session.scalar(
        select(User.id).where(User.organization_id == organization_id, User.role == "admin",
                              User.enabled.is_(True), User.id != leaving_id).limit(1))
    if others is None:
        raise Conflict("this is the organization's last enabled admin; make another admin first")


def own_password_hash(session: Session, principal: Principal) -> str:
    """The signed-in user's password hash, to check the current password against."""
    if principal.user_id is None:
        raise Forbidden("a connected app has no password; rotate it by making a new app")
    user = session.get(User, principal.user_id)
    if user is None or not user.enabled:
        raise Unauthenticated("this token's user is gone or disabled")
    return user.password_hash


def set_own_password(session: Session, principal: Principal, checked_hash: str,
                     new_hash: str) -> str:
    """Store a password hashed outside this transaction (`signin.SignIn.change_password`);
    every other token of the user ends. Refused if the password changed meanwhile. Returns
    the user's name."""
    user = session.get(User, principal.user_id) if principal.user_id else None
    if user is None or user.password_hash != checked_hash:
        raise Conflict("the password changed meanwhile; sign in again")
    user.password_hash = new_hash
    session.execute(delete(AccessToken).where(AccessToken.user_id == user.id,
                                              AccessToken.token_hash != principal.token_hash))
    return user.username


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
    env = session.get(Environment, environment_id) if len(environment_id) <= 64 else None
    if env is None or env.organization_id != organization_id:
        raise NotFound(f"environment {environment_id} not found")
    return env


def create_connected_app(
    session: Session, organization_id: str, name: str, *, role: str = "viewer",
    environment_ids: list[str] | None = None,
) -> tuple[ConnectedApp, str]:
    """Returns the app and its secret; the secret is shown once and kept only as a hash."""
    name = check_name(name, "connected app name")
    secret = secrets.token_urlsafe(32)
    app = ConnectedApp(
        client_id=secrets.token_hex(16),
        organization_id=organization_id,
        name=name,
        secret_hash=hash_secret(secret),
        role=check_role(role),
        environment_ids=check_environments(session, organization_id, environment_ids),
    )
    session.add(app)
    session.flush()
    return app, secret


def get_connected_app(session: Session, organization_id: str, client_id: str) -> ConnectedApp:
    app = session.get(ConnectedApp, client_id) if len(client_id) <= 64 else None
    if app is None or app.organization_id != organization_id:
        raise NotFound(f"connected application {client_id[:64]} not found")
    return app


def update_connected_app(
    session: Session, organization_id: str, client_id: str, *, role: str | None = None,
    enabled: bool | None = None, environment_ids: list[str] | None | object = ...,
) -> ConnectedApp:
    """Disabling an app ends its tokens at once, as for a user."""
    app = get_connected_app(session, organization_id, client_id)
    _set_rights(session, organization_id, app, role, enabled, environment_ids)
    if not app.enabled:
        session.execute(delete(AccessToken).where(AccessToken.client_id == app.client_id))
    session.flush()
    return app


def delete_connected_app(session: Session, organization_id: str, client_id: str) -> None:
    app = get_connected_app(session, organization_id, client_id)
    session.execute(delete(AccessToken).where(AccessToken.client_id == app.client_id))
    session.delete(app)
    session.flush()


# --- tokens --------------------------------------------------------------------------------


def _issue_token(
    session: Session,
    organization_id: str,
    ttl_seconds: int,
    *,
    user_id: str | None = None,
    client_id: str | None = None,
) -> str:
    token = str(uuid.uuid4())  # ARM's form (scripts check for 32 hex digits); 122 random bits
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


@dataclass(frozen=True)
class Credentials:
    """What a sign-in needs to check a secret, read in a short transaction of its own."""

    organization_id: str | None
    secret_hash: str | None
    enabled: bool
    user_id: str | None = None
    client_id: str | None = None


def user_credentials(session: Session, username: str) -> Credentials:
    user = session.scalar(select(User).where(User.username == username)) \
        if 0 < len(username) <= 255 else None
    if user is None:
        return Credentials(None, None, False)
    return Credentials(user.organization_id, user.password_hash, user.enabled, user_id=user.id)


def app_credentials(session: Session, client_id: str) -> Credentials:
    app = session.get(ConnectedApp, client_id) if 0 < len(client_id) <= 64 else None
    if app is None:
        return Credentials(None, None, False)
    return Credentials(app.organization_id, app.secret_hash, app.enabled,
                       client_id=app.client_id)


def issue_token(session: Session, who: Credentials, ttl_seconds: int) -> str:
    """A token for credentials that were just checked; refused if they were disabled since."""
    if who.user_id is not None:
        live = session.scalar(select(User.enabled).where(User.id == who.user_id))
    else:
        live = session.scalar(select(ConnectedApp.enabled)
                              .where(ConnectedApp.client_id == who.client_id))
    if not live or who.organization_id is None:
        raise Unauthenticated("invalid credentials")
    return _issue_token(session, who.organization_id, ttl_seconds, user_id=who.user_id,
                        client_id=who.client_id)


def authenticate(session: Session, token: str | None) -> Principal:
    if not token:
        raise Unauthenticated("missing bearer token")
    if len(token) > 512:
        raise Unauthenticated("invalid or expired token")
    row = session.execute(
        select(AccessToken, User.role, User.enabled, User.environment_ids,
               ConnectedApp.role, ConnectedApp.enabled, ConnectedApp.environment_ids)
        .outerjoin(User, User.id == AccessToken.user_id)
        .outerjoin(ConnectedApp, ConnectedApp.client_id == AccessToken.client_id)
        .where(AccessToken.token_hash == token_digest(token))
    ).first()
    if row is None or row[0].expires_at <= now_ms():
        raise Unauthenticated("invalid or expired token")
    found, user_role, user_on, user_envs, app_role, app_on, app_envs = row
    role, enabled, envs = (user_role, user_on, user_envs) if found.user_id else \
        (app_role, app_on, app_envs)
    if not enabled:
        raise Unauthenticated("invalid or expired token")
    return Principal(
        organization_id=found.organization_id,
        token_hash=found.token_hash,
        expires_at=found.expires_at,
        user_id=found.user_id,
        client_id=found.client_id,
        role=role if role in ROLES else "viewer",
        environment_ids=tuple(envs) if envs is not None else None,
    )


def whoami(session: Session, principal: Principal) -> User | ConnectedApp:
    """The user, or the connected app, behind a principal."""
    if principal.user_id is not None:
        return session.get_one(User, principal.user_id)
    return session.get_one(ConnectedApp, principal.client_id)


def display_name(session: Session, principal: Principal) -> str:
    """How a principal is shown (the console's header, a deployment's author): a user's
    username, a connected app's name."""
    who = whoami(session, principal)
    return who.username if isinstance(who, User) else who.name


def own_organization(session: Session, principal: Principal, org_id: str) -> Organization:
    """An organization the principal may read: its own (404 for none, 403 for another)."""
    org = session.get(Organization, org_id) if len(org_id) <= 64 else None
    if org is None:
        raise NotFound(f"organization {org_id} not found")
    if org.id != principal.organization_id:
        raise Forbidden(f"this token may not read organization {org_id}")
    return org


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
    env = session.get(Environment, env_id) if len(env_id) <= 64 else None
    if env is None or env.organization_id != principal.organization_id or \
            not principal.may_use_environment(env.id):
        raise Forbidden(f"this token may not act in environment {env_id[:64]}")
    return Scope(principal.organization_id, env.id)
