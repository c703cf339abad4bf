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
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from corral.db.session import transaction
from corral.domain import accounts
from corral.domain.identity import Principal
from corral.domain.throttle import Throttle
from corral.errors import TooManyRequests, Unauthenticated

log = logging.getLogger(__name__)
T = TypeVar("T")
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

    def change_password(self, principal: Principal, current: str, new: str,
                        source: str) -> str:
        """The signed-in user's own password. Guessing the current one is throttled like a
        sign-in (per user and per address), and both hashes are computed with no transaction
        open and within the same few concurrent checks, so guesses neither stall writers nor
        take more than their share of the cores. Returns the user's name."""
        keys = (f"user-id:{principal.user_id}", f"source:{source}")
        wait = self.throttle.retry_after(*keys)
        if wait:
            raise TooManyRequests(f"too many wrong passwords; retry in {wait} s",
                                  retry_after=wait)
        new = accounts.check_password(new)
        with transaction(self.readers) as session:
            stored = accounts.own_password_hash(session, principal)
        if not self._costly(lambda: accounts.verify_secret(stored, current)):
            wait = self.throttle.failed(*keys)
            log.warning("wrong current password for user %s from %s%s", principal.user_id,
                        source, f"; locked for {wait} s" if wait else "")
            raise Unauthenticated("the current password is wrong")
        self.throttle.succeeded(keys[0])
        new_hash = self._costly(lambda: accounts.hash_secret(new))
        with transaction(self.writers) as session:
            return accounts.set_own_password(session, principal, stored, new_hash)

    def _check(self, secret_hash: str | None, secret: str) -> bool:
        return self._costly(lambda: accounts.verify_secret(secret_hash, secret))

    def _costly(self, work: Callable[[], T]) -> T:
        """`work` (a password hash or its check) within the few that may run at once."""
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
            return work()
        finally:
            self._checks.release()
