"""The one error hierarchy. `corral.api.errors` maps each class to a status and ARM's body."""

from __future__ import annotations


class CorralError(Exception):
    """A request the domain refuses; `message` is shown to the client as is."""

    def __init__(self, message: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class InvalidInput(CorralError):
    """The request is malformed or breaks a rule about its own content."""


class Unauthenticated(CorralError):
    """No credentials, or credentials that are wrong, expired or revoked."""


class Forbidden(CorralError):
    """Valid credentials that may not act on this organization or environment."""


class NotFound(CorralError):
    """Nothing with that id here (it may exist in another org or environment: never say so)."""


class Conflict(CorralError):
    """The request contradicts the current state (a name taken, a server already grouped)."""


class TooLarge(CorralError):
    """An upload over the configured limit."""


class Unavailable(CorralError):
    """Something the request needs is not reachable now (an agent that is not connected)."""


class TooManyRequests(CorralError):
    """Too many failures or attempts from one source or for one name; retry after a while."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
