"""The recommended systemd units (docs/systemd) are valid units: `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "docs" / "systemd"


@pytest.mark.parametrize("unit", ["corral-serve.service", "corral-agent.service"])
def test_unit_verifies(tmp_path: Path, unit: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd); .ci/run installs it")
    corral = Path(sys.executable).with_name("corral")
    text = (UNITS / unit).read_text()
    assert "ExecStart=/usr/local/bin/corral " in text
    copy = tmp_path / unit
    copy.write_text(text.replace("/usr/local/bin/corral", str(corral)))  # where it is here
    r = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.strip() == "", r.stderr
