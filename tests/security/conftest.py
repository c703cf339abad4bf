"""The attack suite: real `corral serve` and agent processes, attacked the way the threat model
in docs/security.md says they will be. Database-independent attacks run on SQLite only; the
fuzz run (test_fuzz.py) covers both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (  # noqa: F401 - fixtures shared with the end-to-end tests
    agents,
    control_plane,
    operator,
    serve,
    webhook_sink,
)


@pytest.fixture
def password_hash(request: pytest.FixtureRequest) -> str | None:
    """The default profile, the one a password guesser meets, for the tests marked
    `password_cost`: their subject is signing in against it. The others sign in and make users
    as the end-to-end tests do, under OWASP's profile (tests/e2e/conftest.py says why)."""
    return None if request.node.get_closest_marker("password_cost") else "owasp"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """One engine is enough for attacks that do not depend on it."""
    return f"sqlite:///{tmp_path / 'corral.db'}"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
