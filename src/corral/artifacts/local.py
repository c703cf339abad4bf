"""Artifacts on the local file system: `<root>/sha256/ab/abcdef…`, written via a temp file and
an atomic rename, so a crash never leaves a partial blob under its final name."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO

from corral.artifacts.spool import Spool
from corral.artifacts.store import BlobInfo
from corral.errors import InvalidInput, NotFound

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def checked(sha256: str) -> str:
    if not SHA256.match(sha256):
        raise InvalidInput("not a sha256 checksum")
    return sha256


class LocalBlobWriter:
    def __init__(self, store: LocalArtifactStore, max_bytes: int) -> None:
        self._store = store
        self._spool = Spool(store.root / "tmp", max_bytes)

    def write(self, chunk: bytes) -> None:
        self._spool.write(chunk)

    def open_uncommitted(self) -> BinaryIO:
        return self._spool.read_back()

    def commit(self) -> BlobInfo:
        """Durable under its checksum before the caller records it; bytes already in the store
        (the same file uploaded again) are not written twice."""
        info = self._spool.info()
        final = self._store.path_for(info.sha256)
        if final.is_file() and final.stat().st_size == info.size:
            self.abort()
            return info
        written = self._spool.to_file(fsync=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(written, final)
        return info

    def abort(self) -> None:
        self._spool.close()


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "sha256").mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.root / "sha256" / checked(sha256)[:2] / sha256

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
        try:
            return self.path_for(sha256).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {sha256} is not in the store") from exc

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)
