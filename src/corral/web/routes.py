"""The console's part of the control plane's application: its pages, static files, and the
one place where a refusal becomes an error page."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from corral.http_context import add_routes
from corral.web import apps, audit, auth, certificates, environments, fleet, monitoring
from corral.web.actions import PageError
from corral.web.console import CsrfRejected, LoginRequired, RoleRequired, templates


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))),
              name="static")
    for module in (auth, fleet, apps, audit, monitoring, certificates, environments):
        add_routes(app, module.router)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        if request.headers.get("HX-Request") == "true":
            return Response(status_code=204, headers={"HX-Redirect": "/login"})
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _: CsrfRejected) -> HTMLResponse:
        return templates.TemplateResponse(
            request, "error.html",
            {"status": 403, "message": "This form is stale; reload the page and try again."},
            status_code=403)

    @app.exception_handler(RoleRequired)
    async def _role(request: Request, exc: RoleRequired) -> HTMLResponse:
        return templates.TemplateResponse(
            request, "error.html", {"status": 403, "message": exc.message}, status_code=403)

    @app.exception_handler(PageError)
    async def _page(request: Request, exc: PageError) -> HTMLResponse:
        return templates.TemplateResponse(
            request, "error.html", {"status": exc.status, "message": exc.message},
            status_code=exc.status)
