"""Unpacking application archives safely: no absolute paths, no `..`, no links leaving the
folder, bounded file count and unpacked size; a Procfile at the root."""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from corral.bundle import ZipRefused, check_entries

MAX_FILES = 10_000
MAX_BYTES = 1024 * 1024 * 1024
_CHUNK = 1024 * 1024


class ArchiveRefused(Exception):
    """The archive is unsafe or unusable; the message says why."""


def _member_path(name: str) -> PurePosixPath:
    if "\\" in name:
        name = name.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise ArchiveRefused(f"archive entry {name!r} has an absolute path")
    if ".." in path.parts:
        raise ArchiveRefused(f"archive entry {name!r} points outside the application folder")
    return path


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def unpack(archive: Path, destination: Path, *, max_files: int = MAX_FILES,
           max_bytes: int = MAX_BYTES) -> None:
    """Unpack into `destination` (created whole via a sibling temp folder, or not at all)."""
    try:
        with open(archive, "rb") as f:
            check_entries(f, max_entries=max_files)  # before zipfile loads the directory
    except ZipRefused as exc:
        raise ArchiveRefused(str(exc)) from exc
    except OSError as exc:
        raise ArchiveRefused(f"not a readable zip archive: {exc}") from exc
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRefused(f"not a readable zip archive: {exc}") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise ArchiveRefused(f"archive has {len(infos)} entries; the limit is {max_files}")
        declared = sum(i.file_size for i in infos)
        if declared > max_bytes:
            raise ArchiveRefused(f"archive unpacks to {declared} bytes; the limit is {max_bytes}")
        names = {str(_member_path(i.filename)).rstrip("/") for i in infos}
        if "Procfile" not in names:
            raise ArchiveRefused("no Procfile at the archive root")
        staging = destination.with_name(destination.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            try:
                _extract(zf, infos, staging, max_bytes)
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise ArchiveRefused(f"archive could not be unpacked: {exc}") from exc
            shutil.rmtree(destination, ignore_errors=True)
            os.replace(staging, destination)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _extract(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], root: Path, max_bytes: int) -> None:
    written = 0
    root_real = root.resolve()
    links: list[tuple[Path, str, str]] = []
    for info in infos:
        rel = _member_path(info.filename)
        target = root / rel
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if _is_link(info):
            link = zf.read(info).decode("utf-8", "replace")
            links.append((target, link, info.filename))
            continue
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:  # headers can lie; count what really comes out
                    raise ArchiveRefused(f"archive unpacks to more than {max_bytes} bytes")
                dst.write(chunk)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            target.chmod(mode | 0o600)
    for target, link, name in links:
        resolved = Path(os.path.normpath(target.parent.resolve() / link))
        if PurePosixPath(link).is_absolute() or not _inside(root_real, resolved):
            raise ArchiveRefused(f"archive entry {name!r} is a link leaving the application folder")
        target.symlink_to(link)
    for folder, dirs, files in os.walk(root):  # belt and braces: nothing may resolve outside
        for entry in (*dirs, *files):
            if not _inside(root_real, Path(os.path.realpath(Path(folder) / entry))):
                raise ArchiveRefused(f"archive entry {entry!r} resolves outside the folder")


def _inside(root_real: Path, resolved: Path) -> bool:
    return resolved == root_real or root_real in resolved.parents
