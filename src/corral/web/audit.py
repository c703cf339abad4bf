"""The console's audit page: who changed what, from where, and how it ended, filtered."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from corral.domain import audit
from corral.web.actions import read
from corral.web.console import ConsoleDep

router = APIRouter(include_in_schema=False)
PAGE = 100


@router.get("/audit", response_class=HTMLResponse)
def audit_page(console: ConsoleDep, actor: str = "", action: str = "", resource: str = "",
               environment: str = "", offset: int = 0) -> HTMLResponse:
    """Admins see the organization; others the environments they may use."""
    filters = {"actor": actor[:255], "action": action[:255], "resource": resource[:1024],
               "environment": environment[:64]}
    console.plane.audit.store()  # the events of answers already given, before this read
    found, total = read(console, lambda s: audit.search(
        s, console.principal, console.principal.organization_id,
        environment_id=filters["environment"] or None, actor=filters["actor"] or None,
        action=filters["action"] or None, resource=filters["resource"] or None,
        offset=max(0, min(offset, 2**31 - 1)), limit=PAGE))
    return console.render("audit.html", events=found, total=total, filters=filters,
                          offset=max(0, offset), page=PAGE)
