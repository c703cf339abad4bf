"""What an application bundle must be: a zip with a Procfile at its root. The control plane
checks it at upload, `corral app deploy` before it sends, and the agent before it unpacks; the
same rules, from this one module.

The entry count is read from the zip's end record before anything opens the archive:
`zipfile.ZipFile` reads the whole central directory into memory, one object per entry: a small
hostile archive that declares millions of entries costs gigabytes. The end-of-central-directory
record (and its zip64 form) states the count and the directory's size in a few bytes, so both
the control plane (at upload) and the agent (before unpacking) refuse such an archive first."""

from __future__ import annotations

import re
import struct
import zipfile
from typing import BinaryIO

MAX_ENTRIES = 10_000
MAX_DIRECTORY_BYTES = 16 * 1024 * 1024
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_TAIL = 22 + 65535  # the end record and the longest comment
MAX_PROCFILE_BYTES = 64 * 1024
_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")


class ZipRefused(ValueError):
    """Not a zip, or one that declares more than we accept."""


class BundleRefused(ZipRefused):
    """A readable zip that is not an application bundle (no usable Procfile)."""


def check_bundle(f: BinaryIO) -> dict[str, str]:
    """The bundle's Procfile processes; ZipRefused (or BundleRefused) says why it is refused."""
    check_entries(f)  # before zipfile reads a hostile directory into memory
    try:
        with zipfile.ZipFile(f) as archive:
            try:
                info = archive.getinfo("Procfile")
            except KeyError:
                nested = sorted(n for n in archive.namelist() if n.endswith("/Procfile"))
                hint = (f" ({nested[0]} is in a folder: zip the folder's contents, not the "
                        "folder)") if nested else ""
                raise BundleRefused(f"no Procfile at the archive root{hint}") from None
            if info.file_size > MAX_PROCFILE_BYTES:
                raise BundleRefused(f"the Procfile is larger than {MAX_PROCFILE_BYTES} bytes")
            raw = archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError) as exc:
        raise ZipRefused(f"not a readable zip archive ({exc})") from exc
    try:
        return parse_procfile(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BundleRefused("the Procfile is not UTF-8 text") from exc


def parse_procfile(text: str) -> dict[str, str]:
    """`name: command` lines; blank lines and `#` comments are skipped."""
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line)
        if not match:
            raise BundleRefused(f"Procfile line {number} is not `name: command`")
        processes[match.group(1)] = match.group(2).strip()
    if not processes:
        raise BundleRefused("Procfile declares no process")
    return processes


def check_entries(f: BinaryIO, *, max_entries: int = MAX_ENTRIES,
                  max_directory: int = MAX_DIRECTORY_BYTES) -> int:
    """The declared number of entries; ZipRefused when absent, malformed or over the limits."""
    size = f.seek(0, 2)
    start = max(0, size - _TAIL)
    f.seek(start)
    tail = f.read(size - start)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise ZipRefused("not a zip archive (no end of central directory record)")
    entries, directory = struct.unpack("<HI", tail[at + 10 : at + 16])
    if entries == 0xFFFF or directory == 0xFFFFFFFF:
        entries, directory = _zip64(f, start + at)
    if entries > max_entries:
        raise ZipRefused(f"archive has {entries} entries; the limit is {max_entries}")
    if directory > max_directory:
        raise ZipRefused(f"archive's directory is {directory} bytes; the limit is {max_directory}")
    f.seek(0)
    return int(entries)


def _zip64(f: BinaryIO, eocd_offset: int) -> tuple[int, int]:
    if eocd_offset < 20:
        raise ZipRefused("damaged zip64 archive")
    f.seek(eocd_offset - 20)
    locator = f.read(20)
    if locator[:4] != _ZIP64_LOCATOR:
        raise ZipRefused("damaged zip64 archive (no locator)")
    (record_offset,) = struct.unpack("<Q", locator[8:16])
    f.seek(record_offset)
    record = f.read(56)
    if len(record) < 56 or record[:4] != _ZIP64_EOCD:
        raise ZipRefused("damaged zip64 archive (no end record)")
    entries, directory = struct.unpack("<QQ", record[32:48])
    return int(entries), int(directory)
