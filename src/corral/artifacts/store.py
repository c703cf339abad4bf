"""The artifact store interface. Uploads stream through a writer that hashes as it goes, so an
artifact is never held whole in memory and is addressed by its sha256 once complete."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from corral.errors import TooLarge


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    sha1: str
    size: int


class BlobWriter(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> BlobInfo:
        """Make the blob addressable by its sha256; idempotent for identical content."""
        ...

    def abort(self) -> None: ...

    def open_uncommitted(self) -> BinaryIO:
        """Read back what was written so far (to check the archive before committing)."""
        ...


class ArtifactStore(Protocol):
    def writer(self, max_bytes: int) -> BlobWriter: ...

    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> BinaryIO: ...

    def size(self, sha256: str) -> int: ...

    def delete(self, sha256: str) -> None: ...


class HashingCounter:
    """Running sha256 + sha1 (ARM's `fileChecksum`) and a byte count with a limit."""

    def __init__(self, max_bytes: int) -> None:
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1(usedforsecurity=False)
        self.size = 0
        self.max_bytes = max_bytes

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise TooLarge(f"artifact exceeds the size limit of {self.max_bytes} bytes")
        self.sha256.update(chunk)
        self.sha1.update(chunk)

    def info(self) -> BlobInfo:
        return BlobInfo(self.sha256.hexdigest(), self.sha1.hexdigest(), self.size)


def iter_blob(store: ArtifactStore, sha256: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    with store.open(sha256) as f:
        while chunk := f.read(chunk_size):
            yield chunk
