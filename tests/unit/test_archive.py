"""Archive checks: what the agent refuses to unpack, and what it unpacks faithfully."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from corral.agent.archive import ArchiveRefused, unpack


def _zip(path: Path, members: dict[str, str], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, content in members.items():
            z.writestr(zipfile.ZipInfo(name), content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return path


def test_unpacks_files_dirs_modes_and_inner_links(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("Procfile", "web: ./run.sh\n")
        info = zipfile.ZipInfo("run.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        z.writestr(info, "#!/bin/sh\necho hi\n")
        z.writestr("lib/data.txt", "data")
        link = zipfile.ZipInfo("current")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "lib/data.txt")
    dest = tmp_path / "out"
    unpack(archive, dest)
    assert (dest / "Procfile").read_text() == "web: ./run.sh\n"
    assert (dest / "run.sh").stat().st_mode & 0o100
    assert (dest / "current").is_symlink() and (dest / "current").read_text() == "data"
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize(
    ("members", "links", "words"),
    [
        ({"Procfile": "web: x", "../up.txt": "x"}, None, "outside"),
        ({"Procfile": "web: x", "a/../../up.txt": "x"}, None, "outside"),
        ({"Procfile": "web: x", "/etc/evil": "x"}, None, "absolute"),
        ({"Procfile": "web: x", "C:/evil": "x"}, None, "absolute"),
        ({"Procfile": "web: x", "..\\win.txt": "x"}, None, "outside"),
        ({"Procfile": "web: x"}, {"out": "../../etc/passwd"}, "link leaving"),
        ({"Procfile": "web: x"}, {"abs": "/etc/passwd"}, "link leaving"),
        ({"Procfile": "web: x"}, {"d": ".", "d2": "d/../.."}, "link leaving"),
        ({"README": "no procfile"}, None, "no Procfile"),
        ({"sub/Procfile": "web: x"}, None, "no Procfile"),
    ],
)
def test_refused(tmp_path: Path, members: dict[str, str], links: dict[str, str] | None,
                 words: str) -> None:
    archive = _zip(tmp_path / "a.zip", members, links)
    dest = tmp_path / "app" / "out"
    with pytest.raises(ArchiveRefused, match=words):
        unpack(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "app" / "out.partial").exists()
    assert not (tmp_path / "up.txt").exists()


def test_too_many_files(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"Procfile": "web: x", **{f"f{i}": "" for i in range(20)}})
    with pytest.raises(ArchiveRefused, match="entries"):
        unpack(archive, tmp_path / "out", max_files=10)


def test_too_many_bytes_declared_and_real(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"Procfile": "web: x", "big": "x" * 5000})
    with pytest.raises(ArchiveRefused, match="bytes"):
        unpack(archive, tmp_path / "out", max_bytes=1000)


def test_lying_header_is_caught_while_extracting(tmp_path: Path) -> None:
    """A zip whose central directory understates a member's size is stopped by counting."""
    archive = _zip(tmp_path / "a.zip", {"Procfile": "web: x", "big": "y" * 50_000})
    data = bytearray(archive.read_bytes())
    # shrink the declared uncompressed size of "big" in the central directory
    idx = data.rfind(b"PK\x01\x02")
    name_at = data.find(b"big", idx)
    header = data.rfind(b"PK\x01\x02", 0, name_at)
    data[header + 24 : header + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveRefused):
        unpack(archive, tmp_path / "out", max_bytes=20_000)
    assert not (tmp_path / "out").exists()


def test_not_a_zip(tmp_path: Path) -> None:
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(ArchiveRefused, match="zip"):
        unpack(bad, tmp_path / "out")
