"""Console sign-in: the session cookie holds an ordinary access token; every form and htmx
request carries a CSRF token derived from it; the environment is a cookie too."""

from __future__ import annotations

import contextlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from corral.controlplane import ControlPlane
from corral.db.session import transaction
from corral.domain import accounts
from corral.domain.identity import Principal, Scope
from corral.errors import CorralError, Unauthenticated
from corral.http_context import PlaneDep, note_actor, note_environment
from corral.web import filters

SESSION_COOKIE = "corral_session"
ENV_COOKIE = "corral_env"
LOGIN_CSRF_COOKIE = "corral_login_csrf"

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
filters.install(templates.env)


class LoginRequired(Exception):
    """No valid session: the console sends the browser to the sign-in page."""


class CsrfRejected(Exception):
    """A state-changing request without the session's CSRF token."""


class RoleRequired(Exception):
    """The signed-in principal's role does not allow this page or action."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Console forms that change nothing on the fleet: any signed-in role may post them.
UNPRIVILEGED_POSTS = ("/logout", "/environment")


@dataclass
class Console:
    """Who is signed in, where they act, and what every page needs to render."""

    request: Request
    plane: ControlPlane
    token: str
    scope: Scope
    csrf: str
    who: str
    environments: list[dict[str, Any]]
    principal: Principal

    @property
    def role(self) -> str:
        return self.principal.role

    def require(self, role: str) -> None:
        """A page or action beyond the signed-in role: 403, with the reason."""
        if not self.principal.may(role):
            raise RoleRequired(f"This needs the {role} role; you are signed in as "
                               f"{self.principal.role}.")

    @property
    def flash(self) -> tuple[str, str] | None:
        """The message a redirect carried, as (kind, text), if the console signed it."""
        query = self.request.query_params
        for kind in ("error", "notice"):
            text = query.get(kind)
            if text and hmac.compare_digest(query.get("sig", ""), self._flash_mac(kind, text)):
                return kind, text
        return None

    def _flash_mac(self, kind: str, text: str) -> str:
        return self.plane.sealer.mac(f"flash:{kind}:{text}")[:32]

    @property
    def env_name(self) -> str:
        return next((e["name"] for e in self.environments if e["id"] == self.scope.environment_id), "")

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            self.request, template, {"console": self, **context}, status_code=status_code
        )

    def is_htmx(self) -> bool:
        return self.request.headers.get("HX-Request") == "true"

    def redirect(self, url: str, *, notice: str | None = None, error: str | None = None) -> Response:
        """To `url`, with a message for the next page: signed, so that a link made elsewhere
        cannot put its own words in the console's message box."""
        if notice or error:
            kind, text = ("error", error) if error else ("notice", notice or "")
            sep = "&" if "?" in url else "?"
            url += f"{sep}{kind}={quote(text)}&sig={self._flash_mac(kind, text)}"
        if self.is_htmx():
            return Response(status_code=204, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)


def console_for(request: Request, plane: PlaneDep) -> Console:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired
    with transaction(plane.readers) as session:
        try:
            principal = accounts.authenticate(session, token)
        except Unauthenticated as exc:
            raise LoginRequired from exc
        envs = [e for e in accounts.list_environments(session, principal.organization_id)
                if principal.may_use_environment(e.id)]
        if not envs:
            raise LoginRequired
        wanted = request.cookies.get(ENV_COOKIE)
        env = next((e for e in envs if e.id == wanted), None) or next(
            (e for e in envs if e.name == "Production"), envs[0])
        scope = accounts.resolve_scope(session, principal, principal.organization_id, env.id)
        who = accounts.display_name(session, principal)
        environments = [{"id": e.id, "name": e.name} for e in envs]
    console = Console(request, plane, token, scope, plane.sealer.mac(token), who, environments,
                      principal)
    note_actor(request, "user" if principal.user_id else "connectedApp",
               principal.user_id or principal.client_id, who, principal.organization_id)
    note_environment(request, scope.environment_id)
    if request.method == "POST":
        sent = request.headers.get("X-CSRF-Token") or request.query_params.get("csrf", "")
        if not hmac.compare_digest(sent, console.csrf):
            raise CsrfRejected
        if request.url.path not in UNPRIVILEGED_POSTS:
            console.require("operator")  # before any form or upload is read
    return console


ConsoleDep = Annotated[Console, Depends(console_for)]


def sign_in(plane: ControlPlane, username: str, password: str, source: str) -> str:
    return plane.signin.login(username, password, source, plane.settings.user_token_ttl_seconds)


def is_https(request: Request) -> bool:
    """Over TLS here, or behind a trusted proxy that says so (X-Forwarded-Proto, applied by
    the server only for `CORRAL_TRUSTED_PROXIES`)."""
    return request.url.scheme == "https"


def sign_out(plane: ControlPlane, token: str) -> None:
    with transaction(plane.sessions) as session, contextlib.suppress(CorralError):
        accounts.logout(session, accounts.authenticate(session, token))


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
