"""Running a domain change from a console form: one transaction, errors shown on the page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.responses import Response
from sqlalchemy.orm import Session

from corral.db.session import transaction
from corral.errors import CorralError
from corral.web.console import Console

T = TypeVar("T")


class PageError(Exception):
    """A page that cannot be shown (unknown id, another environment's id)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @classmethod
    def of(cls, exc: CorralError) -> PageError:
        """A refusal as a page: the error's own status and message (web/routes.py renders it)."""
        return cls(exc.http_status, exc.message)


def read(console: Console, fn: Callable[[Session], T]) -> T:
    """Load what a page shows; a refusal becomes an error page, never a stack trace."""
    try:
        with transaction(console.plane.readers) as session:
            return fn(session)
    except CorralError as exc:
        raise PageError.of(exc) from exc


def act(console: Console, fn: Callable[[Session], Any], *, then: str | Callable[[Any], str],
        notice: str, back: str) -> Response:
    """Apply `fn`; on success go to `then` with a notice, on refusal back with the message."""
    try:
        with transaction(console.plane.sessions) as session:
            result = fn(session)
            url = then(result) if callable(then) else then
    except CorralError as exc:
        return console.redirect(back, error=exc.message)
    return console.redirect(url, notice=notice)
