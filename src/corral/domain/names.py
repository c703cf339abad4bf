"""Name and text rules shared by every resource."""

from __future__ import annotations

import re

from corral.errors import InvalidInput

_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_NAME = 255
MAX_TEXT = 255


LINE_BREAKS = frozenset("\u2028\u2029")
"""Line breaks outside the control characters (`str.splitlines` knows them, and so do mail
headers and log readers): the line and paragraph separators. NEL (U+0085) is a C1 control."""


def _has_control(value: str) -> bool:
    """C0 and C1 control characters (every line break among them) and the Unicode line and
    paragraph separators: a name is one line wherever it is shown or sent."""
    return any(ord(c) < 32 or 127 <= ord(c) <= 159 or c in LINE_BREAKS for c in value)


def _has_surrogate(value: str) -> bool:
    """A lone surrogate (`\\ud800` in JSON) cannot be stored as UTF-8."""
    return any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def check_name(value: object, what: str) -> str:
    """A display name: 1–255 printable characters, trimmed."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    value = value.strip()
    if not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > MAX_NAME:
        raise InvalidInput(f"{what} must be at most {MAX_NAME} characters")
    if _has_control(value) or _has_surrogate(value):
        raise InvalidInput(f"{what} must not contain control characters or line breaks")
    return value


def check_text(value: object, what: str, *, max_length: int = MAX_TEXT) -> str:
    """Free text that may be empty: bounded, no NUL or other control characters, valid UTF-8."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    if len(value) > max_length:
        raise InvalidInput(f"{what} must be at most {max_length} characters")
    if _has_control(value) or _has_surrogate(value):
        raise InvalidInput(f"{what} must not contain control characters or line breaks")
    return value


def check_application_name(value: object) -> str:
    """Application names become folder names on servers, so they are restricted."""
    if not isinstance(value, str) or not _APP_NAME.fullmatch(value):
        raise InvalidInput(
            "artifactName must be 1–128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


ID_MAX = 2**31 - 1


def as_id(value: object) -> int | None:
    """An integer id the database can hold (1 … 2³¹−1), or None: a caller answers 404."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit() or len(value) > 10:
            return None
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= ID_MAX:
        return None
    return value
