"""What an application bundle must be, checked the same way at upload, in the CLI and on the
agent: hostile or unusable archives are refused with the reason."""

from __future__ import annotations

import io
import zipfile

import pytest

from corral.bundle import MAX_PROCFILE_BYTES, BundleRefused, ZipRefused, check_bundle


def _zip(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    buf.seek(0)
    return buf


def test_a_bundle_gives_its_processes() -> None:
    assert check_bundle(_zip({"Procfile": b"web: run\n", "app.py": b""})) == {"web": "run"}


@pytest.mark.parametrize(("files", "words"), [
    ({"Procfile": b"web: " + b"x" * MAX_PROCFILE_BYTES}, "larger than"),
    ({"Procfile": b"web: \xff\xfe\n"}, "not UTF-8"),
    ({"README": b"hi"}, "no Procfile"),
], ids=["huge-procfile", "not-utf8", "none"])
def test_unusable_bundles_are_refused(files: dict[str, bytes], words: str) -> None:
    with pytest.raises(BundleRefused, match=words):
        check_bundle(_zip(files))


def test_not_a_zip_is_refused() -> None:
    with pytest.raises(ZipRefused):
        check_bundle(io.BytesIO(b"PK\x03\x04 not really"))
