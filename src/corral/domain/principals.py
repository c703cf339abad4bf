"""Authenticated tokens, kept for a few seconds so that a burst of calls does not look each one
up again. Revocation still wins at once: every committed change to users, connected apps,
tokens or environments made in this process empties the cache (the control plane's after-commit
hook), and a lookup that began before such a change is never cached."""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from corral.db.models import now_ms
from corral.db.session import transaction
from corral.domain import accounts
from corral.domain.identity import Principal, Scope

CREDENTIAL_TABLES = frozenset({"users", "connected_apps", "access_tokens", "environments"})
MAX_ENTRIES = 10_000


class PrincipalCache:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._lock = threading.Lock()
        self._generation = 0
        self._entries: dict[tuple[str, str | None, str | None],
                            tuple[float, Principal, Scope | None]] = {}

    @staticmethod
    def _key(token: str | None, org_id: str | None, env_id: str | None, *, scoped: bool
             ) -> tuple[str, str | None, str | None]:
        return (accounts.token_digest((token or "")[:512]), org_id if scoped else None,
                env_id if scoped else None)

    def _hit(self, key: tuple[str, str | None, str | None]
             ) -> tuple[tuple[Principal, Scope | None] | None, int]:
        """What is remembered under `key` and still valid (None: ask the database), and the
        generation it was read in."""
        with self._lock:
            found = self._entries.get(key)
            generation = self._generation
        if found is None or found[0] <= time.monotonic() or found[1].expires_at <= now_ms():
            return None, generation
        return (found[1], found[2]), generation

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def peek(self, token: str | None, org_id: str | None, env_id: str | None
             ) -> tuple[Principal, Scope] | None:
        """The principal and scope a hybrid call with these headers resolved to a moment ago,
        still valid; None when that needs the database (`resolve` then)."""
        if not env_id:
            return None
        hit = self._hit(self._key(token, org_id, env_id, scoped=True))[0]
        return None if hit is None or hit[1] is None else (hit[0], hit[1])

    def resolve(self, readers: sessionmaker[Session], token: str | None, org_id: str | None,
                env_id: str | None, *, scoped: bool) -> tuple[Principal, Scope | None]:
        """The token's principal and, when `scoped`, the scope the headers name; raises as
        `accounts.authenticate` and `accounts.resolve_scope` do (refusals are not cached)."""
        key = self._key(token, org_id, env_id, scoped=scoped)
        now = time.monotonic()
        hit, generation = self._hit(key)
        if hit is not None:
            return hit
        with transaction(readers) as session:
            principal = accounts.authenticate(session, token)
            scope = accounts.resolve_scope(session, principal, org_id, env_id) if scoped else None
        if self.ttl > 0:
            with self._lock:
                if self._generation == generation:
                    if len(self._entries) >= MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[key] = (now + self.ttl, principal, scope)
        return principal, scope

