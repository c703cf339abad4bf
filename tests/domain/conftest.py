"""Domain rules driven on a real database (SQLite and PostgreSQL): the in-process control plane
of tests/api, whose API makes what a rule needs, then the domain's functions called directly
in a transaction, as the gateway and the background loops call them."""

from __future__ import annotations

from tests.api.conftest import _quick_password_hashes, api, client, plane, settings

__all__ = ["_quick_password_hashes", "api", "client", "plane", "settings"]
