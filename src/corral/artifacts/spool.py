"""An upload on its way into a store: hashed as it arrives, held in memory up to 1 MiB and in a
scratch file beyond (constant memory whatever its size), then handed whole to the store's
`commit`. Every backend writes through it, so each keeps the same memory figures."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol

from corral.artifacts.store import BlobInfo, HashingCounter

SMALL_BYTES = 1024 * 1024
"""An upload up to this size is held in memory until it is committed; a larger one goes to a
temporary file as it arrives."""


class Spool:
    def __init__(self, scratch: Path, max_bytes: int) -> None:
        self.path = scratch / f"{uuid.uuid4().hex}.part"
        self._memory: io.BytesIO | None = io.BytesIO()
        self._file: BinaryIO | None = None
        self.counter = HashingCounter(max_bytes)

    def write(self, chunk: bytes) -> None:
        self.counter.update(chunk)
        if self._memory is not None:
            if self._memory.tell() + len(chunk) <= SMALL_BYTES:
                self._memory.write(chunk)
                return
            self._to_file()
        assert self._file is not None
        self._file.write(chunk)

    def _to_file(self) -> None:
        assert self._memory is not None
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(self._memory.getvalue())
        self._memory = None

    def info(self) -> BlobInfo:
        return self.counter.info()

    def read_back(self) -> BinaryIO:
        """What was written so far, from its start."""
        if self._memory is not None:
            return io.BytesIO(self._memory.getbuffer().tobytes())
        assert self._file is not None
        self._file.flush()
        return open(self.path, "rb")

    def to_file(self, fsync: bool) -> Path:
        """The whole upload as a file (written out if it was held in memory), closed."""
        if self._memory is not None:
            self._to_file()
        assert self._file is not None
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        return self.path

    def close(self) -> None:
        self._memory = None
        if self._file is not None and not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class TakesWholeBlobs(Protocol):
    """A store that receives a finished upload in one call (the database, S3)."""

    scratch: Path

    def exists(self, sha256: str) -> bool: ...

    def put(self, info: BlobInfo, source: BinaryIO) -> None:
        """Store these bytes under `info.sha256`, visible only once all are stored."""
        ...


class SpooledWriter:
    """The `BlobWriter` of such a store: spooled, checked, then put whole (once per content)."""

    def __init__(self, store: TakesWholeBlobs, max_bytes: int) -> None:
        self._store = store
        self._spool = Spool(store.scratch, max_bytes)

    def write(self, chunk: bytes) -> None:
        self._spool.write(chunk)

    def open_uncommitted(self) -> BinaryIO:
        return self._spool.read_back()

    def commit(self) -> BlobInfo:
        info = self._spool.info()
        try:
            if not self._store.exists(info.sha256):
                with self._spool.read_back() as source:
                    self._store.put(info, source)
        finally:
            self.abort()
        return info

    def abort(self) -> None:
        self._spool.close()
