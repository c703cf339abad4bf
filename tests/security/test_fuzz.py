"""Schemathesis against our own `/openapi.json`, on SQLite and on PostgreSQL: every operation,
generated valid and invalid input, signed in as an admin. The one check: no server error. It
drives the application in this process (FastAPI's test client), not a `corral serve`: what it
looks for, an answer the code did not foresee, does not depend on the socket.

Checks left off, and why:
- response schema conformance: ARM's shapes are documented loosely on purpose (extra fields are
  allowed, fields are left out where ARM leaves them out);
- status code conformance: 401, 403, 404, 413 and 429 are answered on every route but not listed
  on each;
- negative data rejection: ARM's clients send extra fields, which ARM ignores, and so do we.
Hand-written hostile values (ids past 2^31, lone surrogates, NUL) are in test_http_attacks.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase

from tests.api.conftest import (  # noqa: F401 - fixtures
    Api,
    asgi_client,
    client,
    opened,
    plane,
    settings,
    settings_on,
    signed_in,
)
from tests.api.conftest import api as api  # the fixture
from tests.conftest import (
    PG_ENV,
    _postgres_admin_url,
    database_url,  # noqa: F401 - both engines, not the suite's SQLite-only
    emptied_postgres,
)

EXAMPLES = 20
OPERATIONS = 83


@pytest.fixture
def engines(tmp_path: Path, sqlite_template: Path,
            request: pytest.FixtureRequest) -> Iterator[dict[str, Api]]:
    """A signed-in control plane in this process on each database: SQLite, and PostgreSQL
    when the run has it (as for `every_database`)."""
    urls = {"sqlite": f"sqlite:///{tmp_path / 'corral.db'}"}
    if _postgres_admin_url():
        urls["postgresql"] = emptied_postgres(request)
    else:
        print(f"\n{PG_ENV} is not set: the fuzz runs on SQLite only")
    with ExitStack() as stack:
        apis = {}
        for engine, url in urls.items():
            plane = stack.enter_context(opened(settings_on(tmp_path / engine, url,
                                                           sqlite_template)))
            apis[engine] = signed_in(stack.enter_context(asgi_client(plane)), plane)
        yield apis


@pytest.mark.slow
def test_no_operation_answers_with_a_server_error(engines: dict[str, Api]) -> None:
    """Each generated case is sent to the application on each database: generating the cases
    is two thirds of the run's CPU, and it is done once."""
    import schemathesis  # here: the other workers need not import it (half a second each)

    schema = schemathesis.openapi.from_asgi("/openapi.json",
                                            next(iter(engines.values())).client.app)
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
            for engine, each in engines.items():
                calls += 1
                response = case.call(app=each.client.app,
                                     headers={**(case.headers or {}), **each.headers})
                if response.status_code >= 500:
                    failures.append(f"{engine}: {case.method} {case.formatted_path}: "
                                    f"{response.status_code} {response.text[:200]}")

        run()
    print(f"\n[measure] fuzz: {calls} requests over {operations} operations on "
          f"{' and '.join(engines)}, {len(failures)} server errors")
    # every operation of the document, no fewer: a route that falls out of it (or a new one
    # nobody counted) fails here; change the number with docs/security.md's figures
    assert operations == OPERATIONS
    assert not failures, "\n".join(failures[:20])


STATEFUL_EXAMPLES = 15


@pytest.fixture
def timeless(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing in the sequences may depend on what else ran or on the clock, or Hypothesis
    stops them as inconsistent data generation: it checks that the same choices lead to the
    same draws, and a link's bundle holds what the answers gave.
    - Hypothesis draws some strings and numbers from the constants of every project module
      loaded so far, and looks again for new modules before each sequence: modules that
      earlier tests, or the application itself, imported in the meantime changed what the
      same choices drew (the test failed in a whole run and passed alone). It draws from
      none of them here.
    - Refusals with 429 depend on the clock: registrations per minute, and failed tokens and
      sign-ins (locked a second, then two, four...). Neither is limited here; the limits are
      tested in tests/unit/test_hardening.py and, through a real process, in tests/security."""
    from hypothesis.internal.conjecture import providers

    monkeypatch.setattr(providers, "_get_local_constants", providers.Constants)
    providers.CONSTANTS_CACHE.cache.clear()  # what earlier tests' constants allowed
    monkeypatch.setenv("CORRAL_REGISTRATION_RATE_PER_MINUTE", "0")
    monkeypatch.setenv("CORRAL_LOGIN_FREE_FAILURES", str(10**9))
    yield
    providers.CONSTANTS_CACHE.cache.clear()


@pytest.mark.slow
@pytest.mark.every_database
@pytest.mark.usefixtures("timeless")
def test_linked_sequences_answer_no_server_error(api: Api) -> None:  # noqa: F811 - fixture
    """Schemathesis' stateful phase: it follows the OpenAPI links from each create to the
    calls that take the new id (get, change, delete, members), so sequences reach real objects
    instead of 404s. A fixed seed (derandomized): the same sequences every run (`timeless`)."""
    import schemathesis

    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    calls: list[str] = []
    failures: list[str] = []

    class Linked(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": {**(case.headers or {}), **api.headers}}

        def validate_response(self, response: Any, case: Any, *args: Any, **kw: Any) -> None:
            calls.append(f"{case.method} {case.path} {response.status_code}")
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: "
                                f"{response.status_code} {response.text[:200]}")

    Linked.run(settings=hypothesis.settings(
        max_examples=STATEFUL_EXAMPLES, derandomize=True, deadline=None, database=None,
        stateful_step_count=10, suppress_health_check=list(HealthCheck)))
    chained = [c for c in calls if "{" in c and c.endswith((" 200", " 204"))]
    print(f"\n[measure] stateful fuzz: {len(calls)} calls, {len(chained)} reached a real id, "
          f"{len(failures)} server errors")
    assert chained, "no call followed a link"
    assert not failures, "\n".join(failures[:20])
