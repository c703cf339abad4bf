"""What the domain says of the change it is making, for the audit trail: "redeploy storefront
(deployment 3)", "add web-2 to group web". Stop, start and redeploy share one route; only the
code that made the change knows which it was, and the names. A leaf module: every domain
module may say something without importing the audit trail's reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SAID: ContextVar[list[str] | None] = ContextVar("corral_audit_said", default=None)


@contextmanager
def collecting() -> Iterator[list[str]]:
    """What the domain says of the change being handled in this context (`describe`); the HTTP
    recorder opens one per request. The list is shared, not copied, with the worker threads
    that run the handler, so what they say is there when the answer is."""
    said: list[str] = []
    token = _SAID.set(said)
    try:
        yield said
    finally:
        _SAID.reset(token)


def describe(what: str) -> None:
    """The change in an operator's words, for its audit event: "redeploy storefront
    (deployment 3)", "add web-2 to group web". Said by the domain function that knows the names;
    nothing happens outside a request (the gateway's and the CLI's own work)."""
    said = _SAID.get()
    if said is not None:
        said.append(what)
