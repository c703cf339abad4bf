"""Long id lists in slices: an `IN (...)` of tens of thousands of ids exceeds SQLite's variable
limit and slows PostgreSQL's planner, so set-based queries take 2,000 ids at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

IDS_PER_QUERY = 2000


def chunked(ids: Sequence[T], size: int = IDS_PER_QUERY) -> Iterator[list[T]]:
    """`ids` in order, `size` at a time."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])
