"""Items that arrive together (reports, departures) are stored together, in one transaction:
thousands of agents reporting or dropping off at once cost a few transactions, not thousands."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import Histogram
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from corral.controlplane import ControlPlane
from corral.db.session import in_worker

log = logging.getLogger(__name__)
GATHER_SECONDS = 0.02
RETRY_SECONDS = 1.0
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)
KEEP_AT_MOST = 100_000
"""Items kept for a retry while the database is away (the newest; a fleet's worth)."""
T = TypeVar("T")


class Burst(Generic[T]):
    def __init__(self, plane: ControlPlane, store: Callable[[Session, list[T]], object],
                 what: str, *, still: Callable[[T], bool] = lambda _item: True,
                 timer: Histogram | None = None, gather: float = GATHER_SECONDS) -> None:
        """`store(session, items)` runs once per burst; `still` drops an item that no longer
        applies when its burst is stored; `timer` measures each burst's storing; `gather`:
        how long a burst gathers (longer for items nobody waits on)."""
        self.plane = plane
        self._gather = gather
        self._timer = timer
        self._store = store
        self._what = what
        self._still = still
        self._items: list[T] = []
        self._waiting = asyncio.Event()

    def add(self, item: T) -> None:
        self._items.append(item)
        self._waiting.set()

    def take(self) -> list[T]:
        """What is waiting, no longer to be stored by `run` (the caller stores it)."""
        items, self._items = self._items, []
        return items

    async def run(self) -> None:
        while True:
            await self._waiting.wait()
            await asyncio.sleep(self._gather)  # let a burst gather
            self._waiting.clear()
            batch = [item for item in self.take() if self._still(item)]
            if not batch:
                continue
            began = time.perf_counter()
            try:
                await in_worker(self.plane.sessions, self._store, batch)
                if self._timer is not None:
                    self._timer.observe(time.perf_counter() - began)
            except UNAVAILABLE as exc:
                # the database restarting: keep them (a report is the agent's latest word;
                # it sends none again until something changes) and try again shortly
                log.warning("storing %d %s failed (%s); retrying in %.0f s", len(batch),
                            self._what, type(exc).__name__, RETRY_SECONDS)
                self._items[:0] = batch[-KEEP_AT_MOST:]
                self._waiting.set()
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:
                log.exception("storing %d %s failed", len(batch), self._what)
