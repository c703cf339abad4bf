"""The console's environments page (admins): create, rename and delete, with the API's rules
(`domain/environments.py`: an environment that holds anything, or the last one, stays)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from corral.domain import accounts, environments
from corral.web.actions import act, read
from corral.web.console import ConsoleDep

router = APIRouter(include_in_schema=False)


@router.get("/environments", response_class=HTMLResponse)
def environments_page(console: ConsoleDep) -> HTMLResponse:
    console.require("admin")
    org = console.principal.organization_id
    return console.render("environments.html", environments=read(
        console, lambda s: environments.with_counts(s, org)), types=accounts.ENVIRONMENT_TYPES)


@router.post("/environments")
def create(console: ConsoleDep, name: Annotated[str, Form()] = "",
           type: Annotated[str, Form()] = "sandbox") -> Response:
    console.require("admin")
    org = console.principal.organization_id
    return act(console, lambda s: accounts.create_environment(s, org, name, type),
               then="/environments", back="/environments",
               notice=f"Environment {name} created.")


@router.post("/environments/{env_id}/rename")
def rename(console: ConsoleDep, env_id: str, name: Annotated[str, Form()] = "") -> Response:
    console.require("admin")
    org = console.principal.organization_id
    return act(console, lambda s: environments.rename(s, org, env_id, name),
               then="/environments", back="/environments", notice=f"Renamed to {name}.")


@router.post("/environments/{env_id}/delete")
def delete(console: ConsoleDep, env_id: str) -> Response:
    console.require("admin")
    org = console.principal.organization_id
    return act(console, lambda s: environments.delete_environment(s, org, env_id),
               then="/environments", back="/environments", notice="Environment deleted.")
