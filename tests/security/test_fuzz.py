"""Schemathesis against our own `/openapi.json`, on SQLite and on PostgreSQL: every operation,
generated valid and invalid input, signed in as an admin. The one check: no server error.

Checks left off, and why:
- response schema conformance: ARM's shapes are documented loosely on purpose (extra fields are
  allowed, fields are left out where ARM leaves them out);
- status code conformance: 401, 403, 404, 413 and 429 are answered on every route but not listed
  on each;
- negative data rejection: ARM's clients send extra fields, which ARM ignores, and so do we.
Hand-written hostile values (ids past 2^31, lone surrogates, NUL) are in test_http_attacks.py."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase

from tests.api.conftest import Api, client, plane, settings  # noqa: F401 - fixtures
from tests.api.conftest import api as api  # noqa: F401 - fixture
from tests.conftest import database_url  # noqa: F401 - both engines, not the suite's SQLite-only

EXAMPLES = 20


@pytest.mark.slow
@pytest.mark.every_database
def test_no_operation_answers_with_a_server_error(api: Api) -> None:  # noqa: F811
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    failures: list[str] = []
    calls = 0
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hypothesis.given(operation.as_strategy())
        @hypothesis.settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                             database=None, suppress_health_check=list(HealthCheck),
                             phases=[Phase.explicit, Phase.generate])
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(headers={**(case.headers or {}), **api.headers})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} "
                                f"{response.text[:200]}")

        run()
    print(f"\n[measure] fuzz: {calls} requests over {operations} operations, "
          f"{len(failures)} server errors")
    assert operations >= 40
    assert not failures, "\n".join(failures[:20])
