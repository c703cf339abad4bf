"""Artifacts in the database (`CORRAL_ARTIFACT_STORE=database`), shared by every replica of one
PostgreSQL database with nothing more to run: content-addressed 1 MiB chunks, written in one
transaction with the row that makes the blob visible (a replica that dies mid-upload leaves
nothing behind), and read back one chunk at a time (constant memory both ways)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from corral.artifacts.local import checked
from corral.artifacts.spool import SpooledWriter
from corral.artifacts.store import BlobInfo
from corral.errors import NotFound

CHUNK_BYTES = 1024 * 1024


class _ChunkReader(io.RawIOBase):
    """A blob read chunk by chunk, each in a short query of its own."""

    def __init__(self, engine: Engine, sha256: str, chunks: int) -> None:
        self._engine, self._sha256, self._chunks = engine, sha256, chunks
        self._next = 0
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._buffer:
            if self._next >= self._chunks:
                return 0
            data = _read_chunk(self._engine, self._sha256, self._next)
            self._buffer = memoryview(bytes(data))
            self._next += 1
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def _read_chunk(engine: Engine, sha256: str, seq: int) -> bytes:
    """One chunk, asked for in PostgreSQL's binary format (the text format would send bytea
    as hex: twice the bytes, and a decoding pass)."""
    raw = engine.raw_connection()
    try:
        with raw.driver_connection.cursor(binary=True) as cursor:  # type: ignore[union-attr]
            cursor.execute("SELECT data FROM artifact_chunks WHERE sha256 = %s AND seq = %s",
                           (sha256, seq))
            row = cursor.fetchone()
        raw.commit()
    finally:
        raw.close()
    if row is None:
        raise NotFound(f"artifact {sha256} lost its chunk {seq}")
    return bytes(row[0])


class DatabaseArtifactStore:
    def __init__(self, engine: Engine, scratch: Path) -> None:
        self.engine = engine
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)

    def writer(self, max_bytes: int) -> SpooledWriter:
        return SpooledWriter(self, max_bytes)

    def _blob(self, sha256: str) -> tuple[int, int] | None:
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT size, chunks FROM artifact_blobs WHERE sha256 = :s"),
                               {"s": checked(sha256)}).first()
        return (int(row[0]), int(row[1])) if row else None

    def put(self, info: BlobInfo, source: BinaryIO) -> None:
        """Chunks and the blob's row in one transaction; the same blob stored meanwhile by
        another replica wins and this copy is dropped."""
        seq = 0
        try:
            with self.engine.begin() as conn:
                while chunk := source.read(CHUNK_BYTES):
                    conn.execute(text("INSERT INTO artifact_chunks (sha256, seq, data) "
                                      "VALUES (:s, :n, :d)"),
                                 {"s": info.sha256, "n": seq, "d": chunk})
                    seq += 1
                conn.execute(text("INSERT INTO artifact_blobs (sha256, size, chunks) "
                                  "VALUES (:s, :z, :c)"),
                             {"s": info.sha256, "z": info.size, "c": seq})
        except IntegrityError:
            if not self.exists(info.sha256):
                raise

    def exists(self, sha256: str) -> bool:
        return self._blob(sha256) is not None

    def open(self, sha256: str) -> BinaryIO:
        blob = self._blob(sha256)
        if blob is None:
            raise NotFound(f"artifact {sha256} is not in the store")
        return io.BufferedReader(_ChunkReader(self.engine, sha256, blob[1]),
                                 buffer_size=CHUNK_BYTES)

    def size(self, sha256: str) -> int:
        blob = self._blob(sha256)
        if blob is None:
            raise NotFound(f"artifact {sha256} is not in the store")
        return blob[0]

    def delete(self, sha256: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM artifact_blobs WHERE sha256 = :s"), {"s": checked(sha256)})
            conn.execute(text("DELETE FROM artifact_chunks WHERE sha256 = :s"), {"s": sha256})
