"""Who a call speaks for (`Principal`) and where it acts (`Scope`): what most of the domain
needs of the accounts, without their passwords, tokens and sessions (`accounts`)."""

from __future__ import annotations

from dataclasses import dataclass

from corral.errors import Forbidden

ROLES = ("viewer", "operator", "admin")
"""Each role may do what the ones before it may."""


@dataclass(frozen=True)
class Principal:
    """Who a bearer token speaks for, and with which rights."""

    organization_id: str
    token_hash: str
    expires_at: int
    user_id: str | None = None
    client_id: str | None = None
    role: str = "viewer"
    environment_ids: tuple[str, ...] | None = None

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def require(self, role: str) -> None:
        if not self.may(role):
            raise Forbidden(f"this call needs the {role} role; this token has {self.role}")

    def may_use_environment(self, environment_id: str) -> bool:
        return self.environment_ids is None or environment_id in self.environment_ids


@dataclass(frozen=True)
class Scope:
    """The organization and environment a hybrid call acts in."""

    organization_id: str
    environment_id: str
