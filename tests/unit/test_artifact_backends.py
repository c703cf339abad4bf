"""Every artifact store backend keeps the same promises: content-addressed, streamed both ways,
nothing visible before the commit, the same bytes stored once. `file` in the data folder,
`database` on PostgreSQL (where replicas share it), and `s3` against a real S3-compatible server (moto's)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from corral.artifacts import (
    ArtifactStore,
    DatabaseArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
)
from corral.db.migrate import upgrade
from corral.errors import NotFound, TooLarge


@pytest.fixture(params=["file", "database", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    kind = request.param
    if kind == "file":
        yield LocalArtifactStore(tmp_path / "artifacts")
        return
    if kind == "s3":
        url = request.getfixturevalue("s3_store_url")
        yield S3ArtifactStore(url, request.getfixturevalue("s3_endpoint"), tmp_path / "scratch")
        return
    engine = create_engine(request.getfixturevalue("postgres_database"))
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM artifact_chunks"))
        conn.execute(text("DELETE FROM artifact_blobs"))
    yield DatabaseArtifactStore(engine, tmp_path / "scratch")
    engine.dispose()


def _write(store: ArtifactStore, data: bytes, piece: int = 64 * 1024) -> str:
    writer = store.writer(max_bytes=len(data) + 1)
    for start in range(0, len(data), piece):
        writer.write(data[start : start + piece])
    with writer.open_uncommitted() as f:
        assert f.read() == data
    assert not store.exists(hashlib.sha256(data).hexdigest())  # nothing before the commit
    return writer.commit().sha256


def test_round_trip_across_chunks(store: ArtifactStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 12345)  # spills to scratch; several chunks or parts
    sha = _write(store, data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.exists(sha) and store.size(sha) == len(data)
    with store.open(sha) as f:
        read = b"".join(iter(lambda: f.read(100_000), b""))
    assert read == data


def test_same_bytes_stored_once_and_deleted(store: ArtifactStore) -> None:
    data = b"small artifact"
    first = _write(store, data)
    writer = store.writer(max_bytes=100)
    writer.write(data)
    assert writer.commit().sha256 == first
    with store.open(first) as f:
        assert f.read() == data
    store.delete(first)
    assert not store.exists(first)
    with pytest.raises(NotFound):
        store.open(first)


def test_abort_and_limits_leave_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    writer = store.writer(max_bytes=2 * 1024 * 1024)
    writer.write(b"x" * (1024 * 1024 + 1))
    with pytest.raises(TooLarge):
        writer.write(b"y" * (1024 * 1024))
    writer.abort()
    assert not store.exists(hashlib.sha256(b"x" * (1024 * 1024 + 1)).hexdigest())
    scratch = [p for p in tmp_path.rglob("*.part")]
    assert scratch == []


def test_unknown_and_malformed_ids(store: ArtifactStore) -> None:
    with pytest.raises(NotFound):
        store.open("0" * 64)
    with pytest.raises(NotFound):
        store.size("0" * 64)
    with pytest.raises(Exception, match="sha256"):
        store.exists("../../etc/passwd")
