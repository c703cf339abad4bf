"""Work started in the background and held until it ends. The event loop keeps only a weak
reference to a task, so one that nobody holds may be collected before it is done."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


def start_held(held: set[asyncio.Future[None]], work: Awaitable[None]) -> asyncio.Future[None]:
    """`work` as a task of its own, in `held` until it ends (the owner may cancel them all)."""
    task = asyncio.ensure_future(work)
    held.add(task)
    task.add_done_callback(held.discard)
    return task
