"""Fixtures shared by every test: databases (SQLite and PostgreSQL), a control plane, clients."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from corral.db.migrate import upgrade
from corral.db.models import Base
from corral.db.session import make_engine

PG_ENV = "CORRAL_TEST_DATABASE_URL"


def _postgres_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


SHARED_ENV = "CORRAL_TEST_SHARED"
"""A folder and a name that every worker of one run shares, set by the run's first process."""


_SHARED_HERE: list[str] = []
"""Set in the process that made the shared folder (the controller), which alone removes it."""


def pytest_configure(config: pytest.Config) -> None:
    if SHARED_ENV not in os.environ:  # the controller, or a run without workers: workers inherit
        shared = f"{tempfile.mkdtemp(prefix='corral-run-')}:{uuid.uuid4().hex[:12]}"
        os.environ[SHARED_ENV] = shared
        _SHARED_HERE.append(shared)


def _shared() -> tuple[Path, str]:
    """The run's shared folder, and the name that sets its PostgreSQL template apart."""
    folder, run = os.environ[SHARED_ENV].split(":")
    return Path(folder), run


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _SHARED_HERE:
        return  # a worker: the controller cleans up after all of them
    folder, run = _shared()
    _SHARED_HERE.pop()
    del os.environ[SHARED_ENV]
    admin_url = _postgres_admin_url()
    if admin_url and (folder / "postgres-template.lock").exists():
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "corral_template_{run}"'))
        admin.dispose()
    shutil.rmtree(folder, ignore_errors=True)


def _once(name: str, make: Callable[[Path], None]) -> Path:
    """`name` in the run's shared folder, made by the first worker that needs it while the
    others wait: what every worker would otherwise make for itself."""
    folder = _shared()[0]
    done = folder / name
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            partial = folder / f"{name}.partial"
            make(partial)
            partial.rename(done)
    return done


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of this worker's own for this run, dropped afterwards. It is made
    at the newest revision, a copy of one template migrated once for the whole run (each
    worker migrated its own: Alembic and every revision, a second and more of CPU each)."""
    admin_url = _postgres_admin_url()
    if not admin_url:
        pytest.skip(f"{PG_ENV} is not set, so the PostgreSQL variant cannot run")
    name = f"corral_test_{uuid.uuid4().hex[:12]}"
    template = f"corral_template_{_shared()[1]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def migrated(marker: Path) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{template}"'))
            conn.execute(text(f'CREATE DATABASE "{template}"'))
        engine = make_engine(make_url(admin_url).set(database=template)
                             .render_as_string(hide_password=False))
        upgrade(engine)
        engine.dispose()
        marker.write_text(template)

    _once("postgres-template", migrated)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


PROCESS_SUITES = ("e2e", "security")
"""Folders whose tests start real `corral` processes: marked `e2e`, and run on PostgreSQL as
well as SQLite only when marked `every_database` (their subject depends on the database)."""


def pytest_report_header(config: pytest.Config) -> str:
    """One line that says at once whether the PostgreSQL half runs."""
    if _postgres_admin_url():
        return f"PostgreSQL: {PG_ENV} is set, every database test runs on it too"
    return (f"PostgreSQL: {PG_ENV} is NOT set: the PostgreSQL half of the suite and the "
            "high-availability tests are skipped (`make test` sets it)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected = []
    for item in items:
        here = Path(__file__).parent
        if not item.path.is_relative_to(here):
            continue
        if item.path.relative_to(here).parts[0] not in PROCESS_SUITES:
            continue
        item.add_marker(pytest.mark.e2e)
        engine = getattr(item, "callspec", None) and item.callspec.params.get("database_url")
        if engine == "postgresql" and item.get_closest_marker("every_database") is None:
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        dropped = {id(i) for i in deselected}
        items[:] = [i for i in items if id(i) not in dropped]
    # the longest tests first, then the other process tests, so that the parallel workers
    # finish together instead of waiting on one long test at the end
    items.sort(key=lambda i: (i.get_closest_marker("slow") is None,
                              i.get_closest_marker("e2e") is None))


def pytest_xdist_setupnodes(config: pytest.Config, specs: list[object]) -> None:
    """One fork server for every worker, started before they are: it imports Corral once for
    the whole run instead of once a worker (tests/forkserver.py)."""
    from tests.e2e.processes import FORKS

    FORKS.share()


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection imported (Corral, FastAPI, Hypothesis, schemathesis...) lives as long as
    the worker: out of the collector's sight, each full collection during the run and the two
    at its end take a fraction of the time. And the young generation is collected every 20,000
    allocations instead of 700: the in-process tests allocate fast (SQLAlchemy, Pydantic,
    Hypothesis), and the collector's 2,000 passes took 9% of their CPU. The `corral` processes
    the tests start keep the interpreter's thresholds."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, *gc.get_threshold()[1:])


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Tests that use the database run on both engines: in-process ones always, those that
    start processes when marked `every_database`."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'corral.db'}"
    return emptied_postgres(request)


def emptied_postgres(request: pytest.FixtureRequest) -> str:
    """This worker's PostgreSQL database (`postgres_database`), emptied for the test."""
    url: str = request.getfixturevalue("postgres_database")
    _empty_postgres(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template() -> Path:
    """A SQLite database at the newest revision, migrated once for all the run's workers.
    Migrating a new file costs about a second of CPU (every revision, several of them
    rebuilding tables); copying this one costs a millisecond. The upgrade path itself is tested from empty and
    from older revisions (tests/unit/test_migrations.py, tests/e2e/test_serve_process.py)."""
    def migrated(path: Path) -> None:
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()

    return _once("corral-template.db", migrated)


def _empty_postgres(url: str) -> None:
    """Every row gone and every id sequence back at its start, the schema kept. DELETE, not
    TRUNCATE: for the few rows a test leaves, TRUNCATE's new files for each of 25 tables cost
    about 0.23 s a test against 0.03 s, and hundreds of tests run on PostgreSQL."""
    engine = create_engine(url)
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT to_regclass('public.organizations')")).scalar()
        if exists:
            for table in [*(t.name for t in reversed(Base.metadata.sorted_tables)),
                          "artifact_chunks", "artifact_blobs"]:  # references before referenced
                conn.execute(text(f'DELETE FROM "{table}"'))
            for (sequence,) in conn.execute(text(
                    "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")):
                conn.execute(text("SELECT setval(quote_ident(:s), 1, false)"), {"s": sequence})
    engine.dispose()


# --- an S3-compatible server ------------------------------------------------------------------

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "corral-test", "AWS_SECRET_ACCESS_KEY": "corral-test",
                  "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a local port, a real HTTP endpoint speaking the S3 protocol."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the S3 server did not start:\n{log.read_text()}") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_store_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the S3 server, as `CORRAL_ARTIFACT_STORE` names it."""
    import boto3

    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = f"corral-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/artifacts"
