"""The console's certificate page: the CA, a rotation and the servers it still waits for
(admins), and an operator's renewal from a server's page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from corral.domain import certificates
from corral.errors import CorralError
from corral.web.actions import act, read
from corral.web.console import ConsoleDep

router = APIRouter(include_in_schema=False)


@router.get("/certificates", response_class=HTMLResponse)
def certificates_page(console: ConsoleDep) -> HTMLResponse:
    console.require("admin")
    state = read(console, lambda s: certificates.rotation(s, console.plane.authorities,
                                                          listed=200))
    return console.render("certificates.html", state=state,
                          spread=console.plane.settings.ca_rotation_spread_seconds,
                          ttl=console.plane.settings.agent_cert_ttl_seconds)


@router.post("/certificates/rotate")
def rotate(console: ConsoleDep) -> Response:
    console.require("admin")
    try:
        console.plane.rotate_ca()
    except CorralError as exc:
        return console.redirect("/certificates", error=exc.message)
    return console.redirect("/certificates", notice="A new CA signs from now on; the agents "
                                                    "are moving to it.")


@router.post("/certificates/retire")
def retire(console: ConsoleDep, force: Annotated[str, Form()] = "") -> Response:
    console.require("admin")
    try:
        console.plane.retire_ca(force=force == "on")
    except CorralError as exc:
        return console.redirect("/certificates", error=exc.message)
    return console.redirect("/certificates", notice="The old CA is retired.")


@router.post("/servers/{server_id}/certificate")
def renew(console: ConsoleDep, server_id: int) -> Response:
    return act(console, lambda s: certificates.request_renewal(s, console.scope, server_id),
               then=f"/servers/{server_id}", back=f"/servers/{server_id}",
               notice="The agent renews its certificate at its next contact.")
