"""JSON text, fast, for the large documents: API answers and desired-state messages. At the
bottom, so that HTTP answers do not depend on the agent protocol (`wire`) to be encoded."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """orjson for speed; what it refuses (an integer beyond 64 bits, a key that is not text)
    goes through the standard encoder, so any stored configuration still renders."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def loads(text: str | bytes) -> Any:
    """orjson for speed; what it refuses (`NaN`, an integer beyond 64 bits, which the standard
    encoder writes) is read by the standard decoder, to the same value it always was."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
