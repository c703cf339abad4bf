"""The control plane's parts, built once from settings and shared by API, gateway and CLI."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from corral.artifacts import ArtifactStore, LocalArtifactStore
from corral.config import Settings
from corral.db.migrate import upgrade
from corral.db.session import (
    make_engine,
    make_read_sessionmaker,
    make_sessionmaker,
    transaction,
)
from corral.domain import accounts
from corral.domain.agent_link import AgentLink, NoAgents
from corral.domain.desired_state import CHANGED_KEY
from corral.domain.principals import CREDENTIAL_TABLES, PrincipalCache
from corral.domain.servers import REVOKED_KEY
from corral.domain.signin import SignIn
from corral.domain.throttle import RateLimit, RegistrationGate, Throttle
from corral.pki import CertificateAuthority
from corral.sealing import Sealer

log = logging.getLogger(__name__)
CREDENTIALS_KEY = "corral.credentials_changed"

ChangeListener = Callable[[set[int], set[int]], None]
"""Called after a commit with (servers whose desired state changed, servers deleted)."""


@dataclass
class ControlPlane:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]
    ca: CertificateAuthority
    sealer: Sealer
    store: ArtifactStore
    signin: SignIn
    registrations: RegistrationGate
    principals: PrincipalCache
    listeners: list[ChangeListener] = field(default_factory=list)
    agents: AgentLink = field(default_factory=NoAgents)
    """Set by the gateway while it runs in this process."""

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> ControlPlane:
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)  # the database, CA key and artifacts are the control plane's alone
        engine = make_engine(settings.resolved_database_url)
        if migrate:
            upgrade(engine)
        _private_sqlite_files(settings.resolved_database_url)
        sessions, readers = make_sessionmaker(engine), make_read_sessionmaker(engine)
        plane = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            readers=readers,
            ca=CertificateAuthority.load_or_create(data_dir / "pki"),
            sealer=Sealer.load_or_create(data_dir / "pki"),
            store=LocalArtifactStore(data_dir / "artifacts"),
            signin=SignIn(readers, sessions,
                          throttle=Throttle(free=settings.login_free_failures)),
            registrations=RegistrationGate(
                Throttle(free=settings.login_free_failures),
                RateLimit(settings.registration_rate_per_minute)),
            principals=PrincipalCache(settings.token_cache_seconds),
        )
        event.listen(plane.sessions, "after_commit", plane._after_commit)
        event.listen(plane.sessions, "after_soft_rollback", _forget_changes)
        event.listen(plane.sessions, "do_orm_execute", _note_credential_statements)
        event.listen(plane.sessions, "before_flush", _note_credential_objects)
        return plane

    def has_organization(self) -> bool:
        with transaction(self.readers) as session:
            return accounts.has_organization(session)

    def bootstrap(self) -> str | None:
        """First start: organization, environments, admin. Returns a generated password."""
        with transaction(self.sessions) as session:
            generated = accounts.bootstrap(
                session,
                organization_name=self.settings.organization_name,
                admin_username=self.settings.admin_username,
                admin_password=self.settings.admin_password,
            )
        if generated:
            write_credentials(
                self.settings.data_dir / "admin-credentials", self.settings.admin_username, generated
            )
        return generated

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(CREDENTIALS_KEY, False):
            self.principals.clear()  # a revoked token or a lowered role counts at once
        changed: set[int] = session.info.pop(CHANGED_KEY, set())
        revoked: set[int] = session.info.pop(REVOKED_KEY, set())
        if not (changed or revoked):
            return
        for listener in self.listeners:
            try:
                listener(changed - revoked, revoked)
            except Exception:  # a listener must never undo a committed change
                log.exception("change listener failed")

    def close(self) -> None:
        self.engine.dispose()


def _private_sqlite_files(url: str) -> None:
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if candidate.exists():
            candidate.chmod(0o600)


def _forget_changes(session: Session, _previous: object) -> None:
    session.info.pop(CHANGED_KEY, None)
    session.info.pop(REVOKED_KEY, None)
    session.info.pop(CREDENTIALS_KEY, None)


def _note_credential_statements(state: ORMExecuteState) -> None:
    """A bulk UPDATE or DELETE of users, apps, tokens or environments (logout, disabling)."""
    if state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in CREDENTIAL_TABLES:
            state.session.info[CREDENTIALS_KEY] = True


def _note_credential_objects(session: Session, _context: object, _instances: object) -> None:
    """A changed or deleted user, app, token or environment object (roles, enabled)."""
    for obj in (*session.dirty, *session.deleted):
        if getattr(obj, "__tablename__", None) in CREDENTIAL_TABLES:
            session.info[CREDENTIALS_KEY] = True
            return


def write_credentials(path: Path, username: str, password: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"username={username}\npassword={password}\n")
