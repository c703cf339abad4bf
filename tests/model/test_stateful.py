"""The API against its model (`model.py`), in generated sequences of calls: in this process
on both databases, and through a real `corral serve` process on both."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.backends import InProcess, RealProcess, empty_database
from tests.model.conftest import run
from tests.model.machine import bind


def test_model_in_process(database_url: str, tmp_path: Path, quick_hashes: None) -> None:
    empty_database(database_url)
    backend = InProcess(database_url, tmp_path / "data")
    try:
        run(bind(backend))
    finally:
        backend.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_model_real_process(database_url: str, tmp_path: Path) -> None:
    empty_database(database_url)
    backend = RealProcess(database_url, tmp_path / "data")
    try:
        run(bind(backend), real_process=True)
    finally:
        backend.close()
