"""The gateway's hello batcher when the gateway stops: whoever waits for an answer gets one.
Connection handlers wait on `admit`, and the gateway's close waits for every handler; a hello
left unanswered held a replica's shutdown until it was killed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import pytest

from corral import wire
from corral.gateway.hellos import HelloBatcher, Stopping
from corral.pki.authority import ServerIdentity

WHO = ServerIdentity(server_id=1, organization_id="org", environment_id="env", serial="1")
HELLO = wire.Hello(agentVersion="1", hostname="h")


async def _stopped(batcher: HelloBatcher) -> None:
    task = asyncio.create_task(batcher.run())
    await asyncio.sleep(0)  # it waits for hellos
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_a_hello_waiting_when_the_gateway_stops_is_answered() -> None:
    async def scenario() -> None:
        batcher = HelloBatcher(cast(Any, None))  # stopped before it needs the database
        waiting = asyncio.create_task(batcher.admit(WHO, HELLO))
        await asyncio.sleep(0)  # queued
        await _stopped(batcher)
        with pytest.raises(Stopping):
            await asyncio.wait_for(waiting, 5)

    asyncio.run(scenario())


def test_a_hello_after_the_gateway_stopped_is_answered_at_once() -> None:
    async def scenario() -> None:
        batcher = HelloBatcher(cast(Any, None))
        await _stopped(batcher)
        with pytest.raises(Stopping):
            await asyncio.wait_for(batcher.admit(WHO, HELLO), 5)

    asyncio.run(scenario())
