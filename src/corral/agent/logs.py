"""Reading an application's log for the control plane: the last N lines, then new ones."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

MAX_LINES = 10_000
FOLLOW_POLL = 0.25
_BLOCK = 64 * 1024


def tail(path: Path, lines: int) -> tuple[list[str], int]:
    """The last `lines` lines of the file and the offset where they end."""
    lines = max(0, min(lines, MAX_LINES))
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            data = b""
            pos = end
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(_BLOCK, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return [], 0
    text = data.decode("utf-8", "replace").splitlines()
    return (text[-lines:] if lines else []), end


async def follow(path: Path, offset: int) -> AsyncIterator[list[str]]:
    """New complete lines as they are written; survives copy-truncate rotation."""
    pending = b""
    while True:
        await asyncio.sleep(FOLLOW_POLL)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if size < offset:  # rotated (truncated): start over at the new beginning
            offset, pending = 0, b""
        if size == offset:
            continue
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(size - offset)
        offset += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if complete:
            yield [line.decode("utf-8", "replace") for line in complete]
