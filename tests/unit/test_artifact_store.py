"""The local content-addressed store: hashes while streaming, enforces the limit, atomic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from corral.artifacts import LocalArtifactStore
from corral.errors import NotFound, TooLarge


def test_write_commit_read(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    writer = store.writer(max_bytes=1 << 20)
    for chunk in (b"abc", b"def" * 1000):
        writer.write(chunk)
    info = writer.commit()
    data = b"abc" + b"def" * 1000
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.sha1 == hashlib.sha1(data).hexdigest()
    assert info.size == len(data)
    with store.open(info.sha256) as f:
        assert f.read() == data
    assert list((tmp_path / "tmp").iterdir()) == []


def test_limit_and_abort_leave_nothing(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    writer = store.writer(max_bytes=10)
    writer.write(b"12345")
    with pytest.raises(TooLarge):
        writer.write(b"678901")
    writer.abort()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert list((tmp_path / "sha256").iterdir()) == []


def test_unknown_and_malformed_ids(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(NotFound):
        store.open("0" * 64)
    with pytest.raises(Exception, match="sha256"):
        store.open("../../etc/passwd")
