"""Throttling guesses: after a few failures under one key (a username, a source address, a
client id), refuse further attempts for a while that doubles with every further failure.

Kept in memory, per control-plane process: a restart forgets, and each replica counts its own.
Bounded: past `max_keys` the entries idle longest are dropped."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from corral.errors import TooManyRequests


@dataclass
class _Entry:
    failures: int = 0
    blocked_until: float = 0.0


class Throttle:
    def __init__(self, *, free: int = 5, base_seconds: float = 1.0, cap_seconds: float = 900.0,
                 forget_after: float = 3600.0, max_keys: int = 100_000) -> None:
        self.free = free
        self.base = base_seconds
        self.cap = cap_seconds
        self.forget_after = forget_after
        self.max_keys = max_keys
        self._entries: OrderedDict[str, tuple[_Entry, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.failures_total = 0

    def retry_after(self, *keys: str) -> int:
        """Seconds until every key may try again; 0 when none is blocked."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for key in keys:
                found = self._entries.get(key)
                if found is not None:
                    wait = max(wait, found[0].blocked_until - now)
        return _whole_seconds(wait)

    def failed(self, *keys: str) -> int:
        """Count a failure under each key; returns the wait now imposed (0: none yet)."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            self.failures_total += 1
            for key in keys:
                entry, seen = self._entries.pop(key, (_Entry(), now))
                if now - seen > self.forget_after:
                    entry = _Entry()
                entry.failures += 1
                over = entry.failures - self.free
                if over >= 0:
                    delay = min(self.cap, self.base * 2 ** min(over, 30))
                    entry.blocked_until = now + delay
                    wait = max(wait, delay)
                self._entries[key] = (entry, now)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)
        return _whole_seconds(wait)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)


class RateLimit:
    """At most `per_minute` events under one key in any sliding minute (0: unlimited)."""

    def __init__(self, per_minute: int, max_keys: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._events: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> int:
        """Record one event; returns 0, or the seconds to wait when over the limit."""
        if self.per_minute <= 0:
            return 0
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._events.pop(key, []) if now - t < 60]
            if len(recent) >= self.per_minute:
                self._events[key] = recent
                return max(1, int(60 - (now - recent[0]) + 0.999))
            recent.append(now)
            self._events[key] = recent
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        return 0


def _whole_seconds(wait: float) -> int:
    """A wait as `Retry-After` states it: whole seconds, rounded up; 0 for none."""
    return int(wait + 0.999) if wait > 0 else 0


@dataclass
class RegistrationGate:
    """Who may try to register a server now: a rate per source address, and failed tokens
    counted like failed sign-ins (a wait that grows after the free failures)."""

    failures: Throttle
    rate: RateLimit

    def admit(self, source: str) -> None:
        wait = self.failures.retry_after(f"source:{source}") or self.rate.take(source)
        if wait:
            raise TooManyRequests(f"too many registrations from {source}; retry in {wait} s",
                                  retry_after=wait)

    def failed(self, source: str) -> None:
        self.failures.failed(f"source:{source}")
