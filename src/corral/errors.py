"""The one error hierarchy, below every package. Each class carries its HTTP status:
`corral.api.errors` turns it into ARM's JSON body, `corral.web.actions` into an error page, and
libraries (pki, artifacts) raise the same classes without knowing either."""

from __future__ import annotations


class CorralError(Exception):
    """A request the domain refuses; `message` is shown to the client as is."""

    http_status = 400

    def __init__(self, message: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class InvalidInput(CorralError):
    """The request is malformed or breaks a rule about its own content."""


class Unauthenticated(CorralError):
    """No credentials, or credentials that are wrong, expired or revoked."""

    http_status = 401


class Forbidden(CorralError):
    """Valid credentials that may not act on this organization or environment."""

    http_status = 403


class NotFound(CorralError):
    """Nothing with that id here (it may exist in another org or environment: never say so)."""

    http_status = 404


class Conflict(CorralError):
    """The request contradicts the current state (a name taken, a server already grouped)."""

    http_status = 409


class TooLarge(CorralError):
    """An upload over the configured limit."""

    http_status = 413


class Unavailable(CorralError):
    """Something the request needs is not reachable now (an agent that is not connected)."""

    http_status = 503


class TooManyRequests(CorralError):
    """Too many failures or attempts from one source or for one name; retry after a while."""

    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class AgentUnavailable(Unavailable):
    """The server's agent is not connected to this control plane, or did not answer."""
