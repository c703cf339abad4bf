"""The control plane's parts, built once from settings and shared by API, gateway and CLI."""

from __future__ import annotations

import functools
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from corral.artifacts import (
    ArtifactStore,
    DatabaseArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
)
from corral.config import Settings
from corral.db.changes import WROTE_KEY, ChangeCounter, watch
from corral.db.migrate import exclusive, upgrade
from corral.db.models import Server
from corral.db.session import (
    make_engine,
    make_read_sessionmaker,
    make_sessionmaker,
    transaction,
)
from corral.domain import (
    accounts,
    agents,
    audit,
    certificates,
    desired_state,
    keyring,
    replicas,
    secure,
    webhooks,
)
from corral.domain.agent_link import AgentLink, NoAgents
from corral.domain.desired_state import CHANGED_KEY
from corral.domain.logs import FollowLimits
from corral.domain.principals import CREDENTIAL_TABLES, PrincipalCache
from corral.domain.servers import REVOKED_KEY
from corral.domain.signin import SignIn
from corral.domain.throttle import RateLimit, RegistrationGate, Throttle
from corral.errors import Conflict
from corral.pki.authority import NOT_ROTATING, Authorities, CertificateAuthority, FileAuthorities
from corral.pki.keys import write_private
from corral.sealing import MasterKey, Sealer, SecretBox, WrongMasterKey

log = logging.getLogger(__name__)
CREDENTIALS_KEY = "corral.credentials_changed"
NOTICE_CHANNEL = "corral_changes"
"""PostgreSQL `NOTIFY` channel: every committed change that agents or token caches must learn
of, for the other replicas (ADR 0008)."""
_NOTICE_IDS = 700
"""More servers than this in one change are announced as "every server" (a NOTIFY payload
holds 8,000 bytes); the replicas then compare the revisions of all the agents they hold."""


@dataclass(frozen=True)
class Notice:
    replica: str
    changed: set[int] | None
    """None: any server may have changed."""
    revoked: set[int]
    credentials: bool
    answers: bool = True
    """Something a kept answer may read changed (`corral.db.changes`)."""

    def encode(self) -> str:
        return json.dumps({"r": self.replica,
                           "c": None if self.changed is None else sorted(self.changed),
                           "d": sorted(self.revoked), "k": self.credentials,
                           "a": self.answers},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, payload: str) -> Notice:
        data = json.loads(payload)
        changed = data.get("c")
        return cls(replica=str(data["r"]),
                   changed=None if changed is None else {int(i) for i in changed},
                   revoked={int(i) for i in data.get("d") or []},
                   credentials=bool(data.get("k")), answers=bool(data.get("a", True)))



class CannotStart(RuntimeError):
    """A setting or the shared state refuses this start; the message says what to change."""


ChangeListener = Callable[[set[int], set[int]], None]
"""Called after a commit with (servers whose desired state changed, servers deleted)."""


@dataclass
class ControlPlane:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]
    authorities: Authorities
    sealer: Sealer
    secrets: SecretBox
    """Seals and opens secure property values (ADR 0011)."""
    store: ArtifactStore
    signin: SignIn
    registrations: RegistrationGate
    principals: PrincipalCache
    listeners: list[ChangeListener] = field(default_factory=list)
    replica_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    """This process among the replicas sharing the database."""
    agents: AgentLink = field(default_factory=NoAgents)
    """Set by the gateway while it runs in this process."""
    master: MasterKey | None = None
    """Replicas keep the CAs in the database, sealed with it; without it, in `<data-dir>/pki`."""
    follows: FollowLimits = field(default_factory=FollowLimits)
    """Log streams followed through this process (`domain/logs.py`)."""
    authority_listeners: list[Callable[[Authorities], None]] = field(default_factory=list)
    """Called when the CAs change (a rotation here, or followed from another replica)."""
    audit: audit.Recorder = field(init=False)
    """The audit trail's events on their way to the database (`api/audit.py`)."""
    changes: ChangeCounter = field(default_factory=ChangeCounter)
    """Moves after every change an answer may show, here or (heard) on another replica."""
    _authorities_version: str = ""

    @property
    def ca(self) -> CertificateAuthority:
        """The CA that signs (the new one, during a rotation)."""
        return self.authorities.signer

    @functools.cached_property
    def webhook_deny(self) -> list[webhooks.Network]:
        """`CORRAL_WEBHOOK_DENY`, parsed."""
        return webhooks.networks(self.settings.webhook_deny)

    @property
    def trusted_fingerprints(self) -> list[str]:
        return [ca.fingerprint for ca in self.authorities.trusted]

    def told(self) -> desired_state.Told:
        """What every desired-state message says beside a server's own applications."""
        sealer, box = self.sealer, self.secrets
        return desired_state.Told(
            secret_of=lambda cid, nonce: agents.cluster_secret(sealer, cid, nonce),
            gateways=self.settings.agent_gateway_urls,
            metrics_seconds=self.settings.metrics_seconds,
            trusted_cas=self.trusted_fingerprints,
            open_secrets=lambda conf, name: secure.opened(conf, box, name))

    # --- CA rotation (docs/certificates.md) ----------------------------------------------------

    def rotate_ca(self) -> Authorities:
        """A new signing CA; the old one stays trusted until `retire_ca`. Every server is asked
        to renew within `ca_rotation_spread_seconds`, and so moves to the new CA."""
        with transaction(self.sessions) as session:
            previous = self.authorities.signer.fingerprint
            if self.master is not None:
                rotated = keyring.rotate(session, self.master)
            else:
                rotated = FileAuthorities(self._pki).rotate()
            certificates.rotation_started(session, previous,
                                          self.settings.ca_rotation_spread_seconds)
        self._use(rotated)
        log.info("CA rotation started: new CA %s, old CA %s trusted until it is retired",
                 rotated.signer.fingerprint, previous)
        return rotated

    def retire_ca(self, force: bool = False) -> Authorities:
        """Drop the old CA: a certificate it signed is refused from now on. Refused while
        servers still hold one, unless forced: those are then refused like deleted servers, and
        are registered anew."""
        with transaction(self.sessions) as session:
            state = certificates.rotation(session, self.authorities)
            if not state["rotating"]:
                raise Conflict(NOT_ROTATING)
            if state["serversOnOldCa"] and not force:
                raise Conflict(f"{state['serversOnOldCa']} server(s) still hold a certificate of "
                               "the old CA; wait for them to renew, or force it (they are "
                               "then refused, and must be registered anew)")
            if self.master is not None:
                retired = keyring.retire(session, self.master)
            else:
                retired = FileAuthorities(self._pki).retire()
            # every agent learns which CAs remain, and drops the old one from its bundle
            desired_state.changed(session, servers=list(session.scalars(select(Server.id))))
        self._use(retired)
        log.info("the old CA is retired; CA %s alone is trusted", retired.signer.fingerprint)
        return retired

    def follow_authorities(self) -> bool:
        """Another replica rotated or retired a CA: take the same. True when they changed."""
        if self.master is None:
            return False
        with transaction(self.readers) as session:
            version = keyring.version(session)
            if version == self._authorities_version:
                return False
            found = keyring.authorities(session, self.master, CertificateAuthority.create)
        changed = [c.fingerprint for c in found.trusted] != self.trusted_fingerprints
        self._authorities_version = version
        if changed:
            self._use(found)
            log.info("following the CAs another replica set: %s", ", ".join(
                self.trusted_fingerprints))
        return changed

    @property
    def _pki(self) -> Path:
        return self.settings.data_dir / "pki"

    def _use(self, authorities: Authorities) -> None:
        self.authorities = authorities
        authorities.write_bundle(self._pki / "ca.pem")
        for listener in list(self.authority_listeners):
            listener(authorities)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> ControlPlane:
        accounts.use_password_hashing(settings.password_hash)
        data_dir = settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)  # the database, CA key and artifacts are the control plane's alone
        engine = make_engine(settings.resolved_database_url)
        if migrate:
            upgrade(engine)
        _private_sqlite_files(settings.resolved_database_url)
        sessions, readers = make_sessionmaker(engine), make_read_sessionmaker(engine)
        try:
            authorities, sealer, secrets, master = _keys(settings, engine, sessions)
            store = _artifact_store(settings, engine)
        except BaseException:
            engine.dispose()
            raise
        plane = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            readers=readers,
            authorities=authorities,
            sealer=sealer,
            secrets=secrets,
            master=master,
            store=store,
            signin=SignIn(readers, sessions,
                          throttle=Throttle(free=settings.login_free_failures)),
            registrations=RegistrationGate(
                Throttle(free=settings.login_free_failures),
                RateLimit(settings.registration_rate_per_minute)),
            principals=PrincipalCache(settings.token_cache_seconds),
            # on PostgreSQL, other replicas' changes are heard once the gateway listens
            changes=ChangeCounter(heard=engine.dialect.name != "postgresql"),
        )
        plane.audit = audit.Recorder(sessions)
        watch(plane.sessions, plane.changes)
        event.listen(plane.sessions, "after_commit", plane._after_commit)
        if engine.dialect.name == "postgresql":
            event.listen(plane.sessions, "before_commit", plane._notify_replicas)
        event.listen(plane.sessions, "after_soft_rollback", _forget_changes)
        event.listen(plane.sessions, "do_orm_execute", _note_credential_statements)
        event.listen(plane.sessions, "before_flush", _note_credential_objects)
        plane._resume_rotation()
        with transaction(plane.sessions) as session:
            if sealed := secure.seal_stored(session, plane.secrets):
                log.info("sealed the secure properties of %d row(s) stored in clear", sealed)
        return plane

    def _resume_rotation(self) -> None:
        """A rotation whose CA files were swapped but whose servers were never asked to renew
        (the process died between the two): ask them now, so that it can finish."""
        if self.authorities.retiring is None:
            return
        with transaction(self.sessions) as session:
            asked = certificates.resume_rotation(
                session, self.authorities, self.settings.ca_rotation_spread_seconds)
        if asked:
            log.warning("a CA rotation was under way with %d server(s) on the old CA never "
                        "asked to renew; they are asked now", asked)

    def has_organization(self) -> bool:
        with transaction(self.readers) as session:
            return accounts.has_organization(session)

    def bootstrap(self) -> str | None:
        """First start: organization, environments, admin. Returns a generated password."""
        with exclusive(self.engine), transaction(self.sessions) as session:
            generated = accounts.bootstrap(
                session,
                organization_name=self.settings.organization_name,
                admin_username=self.settings.admin_username,
                admin_password=self.settings.admin_password,
            )
        if generated:
            write_credentials(
                self.settings.data_dir / CREDENTIALS_FILE, self.settings.admin_username, generated
            )
        return generated

    def _notify_replicas(self, session: Session) -> None:
        """NOTIFY inside the transaction: PostgreSQL delivers it to the other replicas when,
        and only when, the change commits."""
        session.flush()  # credential objects are noted as they flush
        changed: set[int] = session.info.get(CHANGED_KEY, set())
        revoked: set[int] = session.info.get(REVOKED_KEY, set())
        credentials = bool(session.info.get(CREDENTIALS_KEY))
        answers = bool(session.info.get(WROTE_KEY))
        if not (changed or revoked or credentials or answers):
            return
        many = len(changed) + len(revoked) > _NOTICE_IDS
        notice = Notice(self.replica_id, None if many else changed,
                        set() if many else revoked, credentials, answers)
        session.execute(text("SELECT pg_notify(:channel, :payload)"),
                        {"channel": NOTICE_CHANNEL, "payload": notice.encode()})

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
        try:
            self.audit.store()  # events of answers already given
        except Exception:
            log.exception("could not record the last audit events")
        self.engine.dispose()


def _keys(settings: Settings, engine: Engine, sessions: sessionmaker[Session]
          ) -> tuple[Authorities, Sealer, SecretBox, MasterKey | None]:
    """With a master key, the CA and sealing keys every replica shares, from the database (the
    first replica creates them, or adopts its data folder's); without one, the data folder's."""
    pki = settings.data_dir / "pki"
    try:
        text = settings.master_key_text()
        master = MasterKey(text) if text is not None else None
    except (OSError, ValueError) as exc:
        raise CannotStart(f"cannot use the master key: {exc}") from exc
    with exclusive(engine), transaction(sessions) as session:
        if master is None:
            if keyring.has_keys(session):
                raise CannotStart(
                    "this database holds the keys of replicas that share it, sealed with a "
                    "master key: give this replica the same CORRAL_MASTER_KEY (or "
                    "CORRAL_MASTER_KEY_FILE)")
            return (FileAuthorities(pki).load(), Sealer.load_or_create(pki),
                    SecretBox.load_or_create(pki), None)
        try:
            authorities = keyring.authorities(
                session, master, adopt=lambda: FileAuthorities(pki).load().signer
                if (pki / "ca.key").exists() else CertificateAuthority.create())
            sealer = keyring.sealer(session, master,
                                    adopt=lambda: Sealer.existing_or_new_key(pki))
            secrets = keyring.secret_box(session, master,
                                         adopt=lambda: SecretBox.existing_or_new_keys(pki))
        except WrongMasterKey as exc:
            raise CannotStart(str(exc)) from exc
    authorities.write_bundle(pki / "ca.pem")  # what operators and `agent register` read
    return authorities, sealer, secrets, master


def _artifact_store(settings: Settings, engine: Engine) -> ArtifactStore:
    where = settings.artifact_store
    scratch = settings.data_dir / "scratch"
    if where == "file":
        return LocalArtifactStore(settings.data_dir / "artifacts")
    if where == "database":
        if engine.dialect.name != "postgresql":
            # one SQLite writer at a time: the chunks could not be written while the deploy's
            # own transaction holds it, and one process has the data folder anyway
            raise CannotStart("CORRAL_ARTIFACT_STORE=database needs PostgreSQL; on SQLite "
                              "keep the default, file")
        return DatabaseArtifactStore(engine, scratch)
    store = S3ArtifactStore(where, settings.s3_endpoint_url, scratch)
    try:
        store.check()
    except Exception as exc:  # botocore's errors: no such bucket, no credentials, no answer
        raise CannotStart(f"the artifact store {where} cannot be used: {exc}") from exc
    return store


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


CREDENTIALS_FILE = "admin-credentials"


def forget_first_password(data_dir: Path, username: str) -> bool:
    """The first start's generated password, kept for whoever set Corral up, stops being the
    user's once it changes: the file goes with it, so that nothing (the console's sign-in page,
    the README's tour) points to a password that no longer works. True when it was removed."""
    path = data_dir / CREDENTIALS_FILE
    try:
        first_line = path.read_text().splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return False
    if first_line != f"username={username}":
        return False
    path.unlink(missing_ok=True)
    return True


def write_credentials(path: Path, username: str, password: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"username={username}\npassword={password}\n")


RUNNING_WITHIN_MS = 60_000
"""A control plane seen this recently may still run: keys are not rotated under it."""


@dataclass(frozen=True)
class KeyRotation:
    rows: int
    """Rows whose secure property values were sealed again."""
    master_key_changed: bool


def rotate_keys(settings: Settings, new_master: str | None = None, *,
                force: bool = False) -> KeyRotation:
    """`corral keys rotate`, with every control plane of the database stopped: a new key for
    the secure property values, every value sealed again with it, and, on replicas, every
    shared key sealed with `new_master` (the master key they will be started with; None keeps
    the current one). Crash-safe: in the database it is one transaction; in a data folder the
    keys file holds both keys until the values are committed (ADR 0011)."""
    pki = settings.data_dir / "pki"
    try:
        text = settings.master_key_text()
        master = MasterKey(text) if text is not None else None
        successor = MasterKey(new_master) if new_master is not None else master
    except (OSError, ValueError) as exc:
        raise CannotStart(f"cannot use the master key: {exc}") from exc
    if new_master is not None and master is None:
        raise CannotStart("this control plane has no master key (CORRAL_MASTER_KEY) to replace")
    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        with exclusive(engine), transaction(sessions) as session:
            running = replicas.seen_within(session, RUNNING_WITHIN_MS)
            if running and not force:
                raise Conflict(
                    f"{len(running)} control plane(s) ran on this database in the last minute: "
                    "stop every one first (after a crash, wait a minute or give --force)")
            if master is None and keyring.has_keys(session):
                raise CannotStart("this database holds the keys of replicas, sealed with a "
                                  "master key: give CORRAL_MASTER_KEY (or its file)")
            if master is None:
                old = SecretBox.load_or_create(pki)
                box = SecretBox([SecretBox.new_key(), *old.keys])
                _write_keys(pki, box)  # both: whatever happens next, every value opens
                rows = secure.reseal_everywhere(session, box)
            else:
                try:
                    old = keyring.secret_box(session, master,
                                             adopt=lambda: SecretBox.existing_or_new_keys(pki))
                except WrongMasterKey as exc:
                    raise CannotStart(str(exc)) from exc
                box = SecretBox([SecretBox.new_key(), *old.keys])
                rows = secure.reseal_everywhere(session, box)
                assert successor is not None
                keyring.reseal(session, master, successor, SecretBox(box.keys[:1]))
        if master is None:
            _write_keys(pki, SecretBox(box.keys[:1]))  # the values are committed: the new alone
        return KeyRotation(rows=rows, master_key_changed=new_master is not None)
    finally:
        engine.dispose()


def _write_keys(pki: Path, box: SecretBox) -> None:
    path = pki / SecretBox.FILE
    staged = path.with_suffix(".new")
    write_private(staged, box.dump())
    os.replace(staged, path)
