"""Reading an application's log for the control plane: the last N lines, then new ones.

An application writes what it likes, so everything here is bounded: a line longer than
`MAX_LINE_BYTES` is cut with a marker, a tail reads at most `MAX_TAIL_BYTES`, and batches are
split so that no message to the control plane exceeds about `MAX_BATCH_BYTES`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

MAX_LINES = 10_000
MAX_LINE_BYTES = 16 * 1024
MAX_TAIL_BYTES = 4 * 1024 * 1024
MAX_BATCH_BYTES = 256 * 1024
FOLLOW_POLL = 0.25
_BLOCK = 64 * 1024


def clip(line: bytes) -> str:
    """One line as text, cut to `MAX_LINE_BYTES` with a marker saying how much was dropped."""
    if len(line) <= MAX_LINE_BYTES:
        return line.decode("utf-8", "replace")
    kept = line[:MAX_LINE_BYTES].decode("utf-8", "ignore")
    return f"{kept}… [corral: {len(line) - MAX_LINE_BYTES} more bytes cut]"


def batches(lines: list[str]) -> Iterator[list[str]]:
    """Consecutive groups of lines of at most about `MAX_BATCH_BYTES` each."""
    batch: list[str] = []
    size = 0
    for line in lines:
        n = len(line) + 8
        if batch and size + n > MAX_BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(line)
        size += n
    if batch:
        yield batch


def tail(path: Path, lines: int) -> tuple[list[str], int]:
    """The last `lines` lines of the file and the offset where they end."""
    lines = max(0, min(lines, MAX_LINES))
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            data = b""
            pos = end
            while pos > 0 and data.count(b"\n") <= lines and len(data) < MAX_TAIL_BYTES:
                step = min(_BLOCK, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
    except FileNotFoundError:
        return [], 0
    text = [clip(line) for line in data.split(b"\n")]
    if pos > 0 and text:  # the first line began before what was read
        text[0] = "[corral: start cut] " + text[0]
    if text and text[-1] == "":
        text.pop()
    return (text[-lines:] if lines else []), end


async def follow(path: Path, offset: int) -> AsyncIterator[list[str]]:
    """New complete lines as they are written; survives copy-truncate rotation. A line that
    grows past the cap without ending is sent cut, and the rest of it is skipped."""
    pending = b""
    skipping = False
    while True:
        await asyncio.sleep(FOLLOW_POLL)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if size < offset:  # rotated (truncated): start over at the new beginning
            offset, pending, skipping = 0, b"", False
        if size == offset:
            continue
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(min(size - offset, MAX_TAIL_BYTES))
        offset += len(chunk)
        out: list[str] = []
        for piece in chunk.split(b"\n")[:-1] if b"\n" in chunk else []:
            if skipping:
                skipping = False  # the end of the over-long line
                continue
            out.append(clip(pending + piece))
            pending = b""
        rest = chunk.rsplit(b"\n", 1)[-1] if b"\n" in chunk else chunk
        if not skipping:
            pending += rest
            if len(pending) > MAX_LINE_BYTES:
                out.append(clip(pending) + " [corral: line continues]")
                pending, skipping = b"", True
        for batch in batches(out):
            yield batch
