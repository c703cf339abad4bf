"""Helpers for tests (not fixtures): polling for a condition, a migrated database by copy, key
pairs and CSRs of every kind an agent might send."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import make_url

T = TypeVar("T")


def eventually(probe: Callable[[], T], check: Callable[[T], bool] = bool, *,
               timeout: float = 30, what: str = "the condition") -> T:
    """Call `probe` until `check` holds for what it returns; that value. A test waits for a
    state, never for a fixed time; on timeout the last value is in the failure.

    Probes start 20 ms apart and back off to 250 ms: a quick change is seen at once, and a
    long wait does not keep the control plane busy answering (the suite runs in parallel)."""
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        value = probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            shown = json.dumps(value, default=str)[:2000] if value is not None else "None"
            raise AssertionError(f"{what} did not hold within {timeout:g}s; last: {shown}")
        time.sleep(pause)
        pause = min(0.25, pause * 1.5)


def at_newest_revision(database_url: str, template: Path) -> None:
    """Give a test's new SQLite database the schema of `template` (the `sqlite_template`
    fixture), copied through SQLite's backup API. PostgreSQL's database is shared by a
    worker's tests and keeps its schema between them."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or Path(url.database).exists():
        return
    with closing(sqlite3.connect(template)) as source, \
            closing(sqlite3.connect(url.database)) as copy:
        source.backup(copy)


def make_key(kind: str = "ec") -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    bits = int(kind.removeprefix("rsa"))
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_csr(kind: str = "ec", common_name: str = "agent") -> str:
    key = make_key(kind)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


_LOCAL: httpx.Client | None = None


def local_http() -> httpx.Client:
    """One client, in this process, for plain-HTTP calls to what a test started (applications,
    agents' local APIs, a control plane without TLS). Every new httpx client builds a TLS
    context and reads the CA bundle, some 40 ms of CPU: `httpx.get` in a polling loop spent
    seconds a test on it. No connection is kept, so a restarted process is reached afresh."""
    global _LOCAL
    if _LOCAL is None:
        _LOCAL = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=5)
    return _LOCAL
