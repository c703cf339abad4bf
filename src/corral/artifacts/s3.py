"""Artifacts in an S3-compatible object store (`CORRAL_ARTIFACT_STORE=s3://bucket/prefix`): AWS,
MinIO, Ceph, ... through boto3, with `CORRAL_S3_ENDPOINT_URL` and the usual AWS credential
variables. An object appears whole when its PUT (or multipart upload) completes, so a replica
that dies mid-upload leaves nothing visible; reads stream the object's body."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from corral.artifacts.local import checked
from corral.artifacts.spool import SpooledWriter
from corral.artifacts.store import BlobInfo
from corral.errors import NotFound

PART_BYTES = 8 * 1024 * 1024


class _Body(io.RawIOBase):
    """An object's streaming body as a file: read in parts, closed with the connection."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._body.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


class S3ArtifactStore:
    def __init__(self, url: str, endpoint_url: str | None, scratch: Path) -> None:
        import boto3  # type: ignore[import-untyped]
        from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        parts = urlsplit(url)
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 5, "mode": "standard"},
                          connect_timeout=5, read_timeout=60))
        # two parts of 8 MiB in flight at most: an upload's memory stays bounded
        self.transfer = TransferConfig(multipart_threshold=PART_BYTES,
                                       multipart_chunksize=PART_BYTES, max_concurrency=2)

    def check(self) -> None:
        """At start: the bucket answers with these credentials (else a clear refusal)."""
        self.client.head_bucket(Bucket=self.bucket)

    def key(self, sha256: str) -> str:
        name = f"sha256/{checked(sha256)[:2]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def writer(self, max_bytes: int) -> SpooledWriter:
        return SpooledWriter(self, max_bytes)

    def put(self, info: BlobInfo, source: BinaryIO) -> None:
        """One PUT, or a multipart upload completed at the end: whole or absent. A spooled
        file is uploaded by name, so that boto3 reads each part from disk as it sends it (from
        a file object it would hold up to ten parts in memory)."""
        name = getattr(source, "name", None)
        if isinstance(name, str):
            self.client.upload_file(name, self.bucket, self.key(info.sha256),
                                    Config=self.transfer)
        else:
            self.client.put_object(Bucket=self.bucket, Key=self.key(info.sha256),
                                   Body=source.read())

    def _head(self, sha256: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))  # type: ignore[no-any-return]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def open(self, sha256: str) -> BinaryIO:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise NotFound(f"artifact {sha256} is not in the store") from exc
            raise
        return io.BufferedReader(_Body(answer["Body"]), buffer_size=1024 * 1024)

    def size(self, sha256: str) -> int:
        head = self._head(sha256)
        if head is None:
            raise NotFound(f"artifact {sha256} is not in the store")
        return int(head["ContentLength"])

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
