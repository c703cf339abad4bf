"""Name rules shared by every resource."""

from __future__ import annotations

import re

from corral.domain.errors import InvalidInput

_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_NAME = 255


def check_name(value: object, what: str) -> str:
    """A display name: 1–255 printable characters, trimmed."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    value = value.strip()
    if not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > MAX_NAME:
        raise InvalidInput(f"{what} must be at most {MAX_NAME} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(f"{what} must not contain control characters")
    return value


def check_application_name(value: object) -> str:
    """Application names become folder names on servers, so they are restricted."""
    if not isinstance(value, str) or not _APP_NAME.match(value):
        raise InvalidInput(
            "artifactName must be 1–128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value
