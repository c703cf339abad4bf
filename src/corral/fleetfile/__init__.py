"""A fleet in a file (docs/fleet-file.md): `plan` shows what `apply` would change, `apply`
changes it through the public API with the caller's own token (so roles and the audit trail
apply), `export` writes an environment as a file that plans to no change."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.client import ApiError, Client
from corral.fleetfile import document, plan, state
from corral.fleetfile.document import Application, FileRefused, Fleet
from corral.fleetfile.plan import Plan
from corral.fleetfile.state import Current


@dataclass
class Prepared:
    fleet: Fleet
    current: Current
    plan: Plan


def prepare(client: Client, path: Path, *, prune: bool, environment: str | None) -> Prepared:
    """The file read and checked, its environment chosen on `client` (the file's, else
    `environment`) and read, and the plan. Changes nothing. FileRefused or ApiError."""
    fleet = document.load(path)
    chosen = client.use_environment(fleet.environment or environment)
    try:
        current = state.read(client)
    except state.StateRefused as exc:
        raise FileRefused(f"{path}: {exc}") from None
    sources = state.Sources(client, current)

    def find_source(a: Application) -> tuple[int, str]:
        try:
            if a.artifact.application is None:
                assert a.artifact.sha256 is not None
                return sources.by_checksum(a.artifact.sha256)
            return sources.by_name(a.artifact.application, a.artifact.environment)
        except (state.StateRefused, ApiError) as exc:
            raise FileRefused(f"{path}, line {a.line}: application {a.name}: "
                              f"{getattr(exc, 'message', None) or exc}") from None

    def digests(app_id: int) -> dict[str, dict[str, str]]:
        try:
            return client.apps.secure_digests(app_id)
        except ApiError as exc:
            if exc.status == 404:  # a control plane without them (ARM): every value is sent
                return {}
            raise

    made = plan.make(fleet, current, chosen.env_name or fleet.environment or "",
                     prune=prune, digests=digests, find_source=find_source)
    return Prepared(fleet, current, made)
