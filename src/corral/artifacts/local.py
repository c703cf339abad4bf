"""Artifacts on the local file system: `<root>/sha256/ab/abcdef…`, written via a temp file and
an atomic rename, so a crash never leaves a partial blob under its final name."""

from __future__ import annotations

import io
import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO

from corral.artifacts.store import BlobInfo, HashingCounter
from corral.errors import InvalidInput, NotFound

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


SMALL_BYTES = 1024 * 1024
"""An upload up to this size is held in memory until it is committed; a larger one goes to a
temporary file as it arrives (constant memory whatever its size)."""


class LocalBlobWriter:
    def __init__(self, store: LocalArtifactStore, max_bytes: int) -> None:
        self._store = store
        self._tmp = store.root / "tmp" / f"{uuid.uuid4().hex}.part"
        self._memory: io.BytesIO | None = io.BytesIO()
        self._file: BinaryIO | None = None
        self._counter = HashingCounter(max_bytes)

    def write(self, chunk: bytes) -> None:
        self._counter.update(chunk)
        if self._memory is not None:
            if self._memory.tell() + len(chunk) <= SMALL_BYTES:
                self._memory.write(chunk)
                return
            self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed by commit/abort
            self._file.write(self._memory.getvalue())
            self._memory = None
        assert self._file is not None
        self._file.write(chunk)

    def open_uncommitted(self) -> BinaryIO:
        if self._memory is not None:
            return io.BytesIO(self._memory.getbuffer().tobytes())
        assert self._file is not None
        self._file.flush()
        return open(self._tmp, "rb")

    def commit(self) -> BlobInfo:
        """Durable under its checksum before the caller records it; bytes already in the store
        (the same file uploaded again) are not written twice."""
        info = self._counter.info()
        final = self._store.path_for(info.sha256)
        if final.is_file() and final.stat().st_size == info.size:
            self.abort()
            return info
        if self._memory is not None:
            self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed below
            self._file.write(self._memory.getvalue())
            self._memory = None
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, final)
        return info

    def abort(self) -> None:
        self._memory = None
        if self._file is not None and not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise InvalidInput("not a sha256 checksum")
        return self.root / "sha256" / sha256[:2] / sha256

    def writer(self, max_bytes: int) -> LocalBlobWriter:
        return LocalBlobWriter(self, max_bytes)

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path_for(sha256), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {sha256} is not in the store") from exc

    def size(self, sha256: str) -> int:
        return self.path_for(sha256).stat().st_size

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)
