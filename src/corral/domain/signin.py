"""Checking passwords and client secrets without letting guesses stall or reveal anything.

- The slow hash check runs with no database transaction open: the credentials are read in one
  short read-only transaction, the token is written in another.
- Only a few hash checks run at once (`concurrent_checks`), so a flood of guesses uses at most
  that many cores. Only a few more may wait for their turn (`MAX_WAITING`), each at most
  `CHECK_WAIT_SECONDS`: beyond that, 429 at once, so sign-ins never tie up the worker threads
  that every other request needs.
- Failures are counted per name and per source address; past a few, 429 with `Retry-After`,
  the wait doubling with each further failure. An unknown name costs the same as a wrong
  password (a dummy hash is checked)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from corral.db.session import transaction
from corral.domain import accounts
from corral.domain.throttle import Throttle
from corral.errors import TooManyRequests, Unauthenticated

log = logging.getLogger(__name__)
CHECK_WAIT_SECONDS = 10.0
MAX_WAITING = 4


class SignIn:
    def __init__(self, readers: sessionmaker[Session], writers: sessionmaker[Session], *,
                 throttle: Throttle | None = None, concurrent_checks: int = 1) -> None:
        self.readers = readers
        self.writers = writers
        self.throttle = throttle or Throttle()
        self._checks = threading.BoundedSemaphore(max(1, concurrent_checks))
        self._waiting = 0
        self._waiting_lock = threading.Lock()

    @property
    def failures_total(self) -> int:
        return self.throttle.failures_total

    def login(self, username: str, password: str, source: str, ttl_seconds: int) -> str:
        return self._sign_in(f"user:{username}", username, password, source, ttl_seconds,
                             accounts.user_credentials, "invalid username or password")

    def client_credentials(self, client_id: str, secret: str, source: str,
                           ttl_seconds: int) -> str:
        return self._sign_in(f"client:{client_id}", client_id, secret, source, ttl_seconds,
                             accounts.app_credentials, "invalid client_id or client_secret")

    def _sign_in(
        self, key: str, name: str, secret: str, source: str, ttl_seconds: int,
        lookup: Callable[[Session, str], accounts.Credentials], refusal: str,
    ) -> str:
        keys = (key[:300], f"source:{source}")
        wait = self.throttle.retry_after(*keys)
        if wait:
            raise TooManyRequests(f"too many failed sign-ins; retry in {wait} s", retry_after=wait)
        with transaction(self.readers) as session:
            who = lookup(session, name)
        good = self._check(who.secret_hash, secret[: accounts.MAX_PASSWORD + 1])
        if not good or not who.enabled:
            wait = self.throttle.failed(*keys)
            log.warning("failed sign-in for %r from %s%s", name[:80], source,
                        f"; locked for {wait} s" if wait else "")
            raise Unauthenticated(refusal)
        try:
            with transaction(self.writers) as session:
                token = accounts.issue_token(session, who, ttl_seconds)
        except Unauthenticated:
            raise Unauthenticated(refusal) from None
        self.throttle.succeeded(keys[0])
        return token

    def _check(self, secret_hash: str | None, secret: str) -> bool:
        busy = TooManyRequests("too many sign-ins at once; retry shortly", retry_after=1)
        with self._waiting_lock:
            if self._waiting >= MAX_WAITING:
                raise busy
            self._waiting += 1
        try:
            acquired = self._checks.acquire(timeout=CHECK_WAIT_SECONDS)
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        if not acquired:
            raise busy
        try:
            return accounts.verify_secret(secret_hash, secret)
        finally:
            self._checks.release()
