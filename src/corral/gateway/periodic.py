"""The loop of every periodic job of the gateway: the sweep, following the CAs, and the
leader's singleton work (rollouts, alerts). Event-driven loops (pushes, hellos, reports,
change notices, the leader's lock) wait on their events instead and keep their own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(seconds: float, work: Callable[[], Awaitable[object]], what: str, *,
                only_while: Callable[[], bool] | None = None) -> None:
    """`work` every `seconds` for as long as the gateway runs; with `only_while`, a round runs
    only while that holds (this replica leads). A failure is logged with `what`, and the next
    round goes on: one bad round never ends the job."""
    while True:
        await asyncio.sleep(seconds)
        if only_while is not None and not only_while():
            continue
        try:
            await work()
        except Exception:
            log.exception("%s failed", what)
