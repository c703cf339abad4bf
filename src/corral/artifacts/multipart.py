"""Streaming multipart parsing for artifact uploads: file parts go straight into the artifact
store's writer (hashed on the way), other parts are small text fields. Nothing is buffered whole.
It reads a stream of bytes, not an HTTP request, so the API and the console share it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

from corral.artifacts.store import ArtifactStore, BlobWriter
from corral.bundle import ZipRefused, check_bundle
from corral.errors import CorralError, InvalidInput, TooLarge

MAX_FIELD_BYTES = 256 * 1024
MAX_FIELDS = 16
MAX_HEADER_BYTES = 8 * 1024
MULTIPART_OVERHEAD = 1024 * 1024


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    file: BlobWriter | None = None
    file_name: str = ""

    def abort(self) -> None:
        if self.file is not None:
            self.file.abort()
            self.file = None

    def check_bundle(self) -> None:
        """The upload must be an application bundle: a zip with a Procfile at its root."""
        assert self.file is not None
        with self.file.open_uncommitted() as f:
            try:
                check_bundle(f)
            except ZipRefused as exc:
                raise InvalidInput(f"the uploaded file is refused: {exc}") from exc


class _Collector:
    def __init__(self, store: ArtifactStore, max_bytes: int) -> None:
        self.form = UploadForm()
        self.store = store
        self.max_bytes = max_bytes
        self._headers: dict[bytes, bytes] = {}
        self._header_field = b""
        self._header_value = b""
        self._name = ""
        self._buffer: bytearray | None = None
        self._writer: BlobWriter | None = None
        self._parts = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_FIELDS:
            raise InvalidInput(f"a form may have at most {MAX_FIELDS} parts")
        self._headers = {}
        self._header_field = self._header_value = b""
        self._header_bytes = 0

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise InvalidInput("a form part's headers are too long")

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is not None or self._name == "file":
            if self.form.file is not None:
                raise InvalidInput("only one file may be uploaded")
            self._writer = self.store.writer(self.max_bytes)
            self.form.file = self._writer
            raw = (filename or b"").decode("utf-8", "replace")
            self.form.file_name = raw.replace("\\", "/").rsplit("/", 1)[-1][:255]
            self._buffer = None
        else:
            self._writer = None
            self._buffer = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._writer is not None:
            self._writer.write(data[start:end])
        elif self._buffer is not None:
            self._buffer += data[start:end]
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise InvalidInput(f"form field {self._name[:64]!r} is larger than "
                                   f"{MAX_FIELD_BYTES // 1024} KiB")

    def _part_end(self) -> None:
        if self._buffer is not None:
            self.form.fields[self._name] = self._buffer.decode("utf-8", "replace")
        self._buffer = None
        self._writer = None


async def read_multipart(content_type_header: str, declared: str | None,
                         body: AsyncIterator[bytes], store: ArtifactStore,
                         max_bytes: int) -> UploadForm:
    """Parse a multipart body (`Content-Type`, `Content-Length` as sent, the body's chunks)."""
    content_type, params = parse_options_header(content_type_header)
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidInput("the request must be multipart/form-data")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise TooLarge(f"artifact exceeds the size limit of {max_bytes} bytes")
    boundary = params[b"boundary"]
    if not 1 <= len(boundary) <= 200:
        raise InvalidInput("the multipart boundary must be 1 to 200 characters")
    collector = _Collector(store, max_bytes)
    parser = MultipartParser(boundary, collector.callbacks())
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
    except (CorralError, asyncio.CancelledError):
        collector.form.abort()
        raise
    except Exception as exc:  # the parser's own errors: a malformed body
        collector.form.abort()
        raise InvalidInput(f"the multipart body is malformed: {str(exc)[:120]}") from exc
    except BaseException:
        collector.form.abort()
        raise
    return collector.form
