"""Sign-in, sign-out and the environment switcher."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.controlplane import CREDENTIALS_FILE
from corral.errors import CorralError, TooManyRequests
from corral.http_context import PlaneDep, client_address, note_actor
from corral.web.console import (
    ENV_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ConsoleDep,
    is_https,
    new_login_csrf,
    sign_in,
    sign_out,
    templates,
)

router = APIRouter(include_in_schema=False)


def _login_page(request: Request, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    csrf = new_login_csrf()
    response = templates.TemplateResponse(
        request, "login.html", {"csrf": csrf, "error": error, "first_password": (
            request.app.state.plane.settings.data_dir / CREDENTIALS_FILE).exists()},
        status_code=status_code
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                        secure=is_https(request))
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login")
async def login(
    request: Request,
    plane: PlaneDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    note_actor(request, "user", None, username[:255])
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf, expected):
        return _login_page(request, "The form expired; please sign in again.", 400)
    try:
        token = await run_in_threadpool(sign_in, plane, username[:255], password[:1024],
                                        client_address(request))
    except CorralError as exc:
        status = 429 if isinstance(exc, TooManyRequests) else 401
        return _login_page(request, exc.message[:1].upper() + exc.message[1:] + ".", status)
    response = RedirectResponse("/servers", status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                        secure=is_https(request),
                        max_age=plane.settings.user_token_ttl_seconds)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(console: ConsoleDep) -> Response:
    sign_out(console.plane, console.token)
    response = console.redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.post("/environment")
def switch_environment(console: ConsoleDep, env: Annotated[str, Form()]) -> Response:
    response = console.redirect("/servers")
    if any(e["id"] == env for e in console.environments):
        response.set_cookie(ENV_COOKIE, env, httponly=True, samesite="lax",
                            secure=is_https(console.request))
    return response


@router.get("/")
def home(console: ConsoleDep) -> Response:
    return RedirectResponse("/servers", status_code=303)
