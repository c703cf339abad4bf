"""The local content-addressed store: hashes while streaming, enforces the limit, atomic."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from corral.artifacts import LocalArtifactStore
from corral.artifacts.spool import SMALL_BYTES
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


def test_small_uploads_stay_in_memory_and_the_same_bytes_are_stored_once(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    first = store.writer(max_bytes=1 << 20)
    first.write(b"small")
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing on disk before the commit
    with first.open_uncommitted() as f:
        assert f.read() == b"small"
    info = first.commit()
    stored = store.path_for(info.sha256)
    stamp = stored.stat().st_mtime_ns
    again = store.writer(max_bytes=1 << 20)
    again.write(b"small")
    assert again.commit() == info
    assert stored.stat().st_mtime_ns == stamp  # not written a second time
    assert list((tmp_path / "tmp").iterdir()) == []


def test_large_uploads_go_to_disk_as_they_arrive(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    writer = store.writer(max_bytes=4 * SMALL_BYTES)
    block = b"x" * (SMALL_BYTES // 2 + 1)
    writer.write(block)
    assert list((tmp_path / "tmp").iterdir()) == []
    writer.write(block)
    [spilled] = (tmp_path / "tmp").iterdir()
    with writer.open_uncommitted() as f:
        assert f.read() == block * 2
    info = writer.commit()
    assert not spilled.exists()
    with store.open(info.sha256) as f:
        assert f.read() == block * 2
