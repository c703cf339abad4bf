"""`/hybrid/api/v1/certificateAuthority` (Corral's): where a CA rotation stands, start one,
retire the old CA. Admins only: the CA is the whole control plane's (docs/certificates.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from corral.api import schemas
from corral.api.deps import AdminDep, ReadSessionDep
from corral.controlplane import ControlPlane
from corral.db.session import transaction
from corral.domain import certificates
from corral.http_context import PlaneDep

router = APIRouter(prefix="/hybrid/api/v1/certificateAuthority", tags=["certificates"])


@router.get("")
def rotation_state(session: ReadSessionDep, plane: PlaneDep, _admin: AdminDep) -> dict[str, Any]:
    """The signing CA, the one being retired (if any), and the servers still on it."""
    return {"data": certificates.rotation(session, plane.authorities)}


@router.post("/rotate", status_code=201)
def rotate(plane: PlaneDep, _admin: AdminDep) -> dict[str, Any]:
    """A new signing CA; both are trusted, and every agent renews under the new one within
    `CORRAL_CA_ROTATION_SPREAD_SECONDS`. 409 while a rotation is under way."""
    plane.rotate_ca()
    return {"data": _state(plane)}


@router.post("/retire")
def retire(plane: PlaneDep, _admin: AdminDep, body: schemas.CaRetireIn | None = None
           ) -> dict[str, Any]:
    """Drop the old CA. 409 while servers still hold its certificates, unless `force`."""
    plane.retire_ca(force=bool(body and body.force))
    return {"data": _state(plane)}


def _state(plane: ControlPlane) -> dict[str, Any]:
    with transaction(plane.readers) as session:
        return certificates.rotation(session, plane.authorities)
