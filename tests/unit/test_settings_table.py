"""README's configuration tables hold every setting the code reads, and nothing else: each field
of `Settings` (as `CORRAL_<FIELD>`) and each `CORRAL_*` variable the CLI or the agent reads, with
the bounds `Settings` enforces."""

from __future__ import annotations

import re
from pathlib import Path

from annotated_types import Ge, Gt, Le

from corral.config import Settings

ROOT = Path(__file__).resolve().parents[2]
READS = re.compile(r'(?:envvar=|os\.environ\.get\(|os\.environ\[|getenv\()"(CORRAL_[A-Z0-9_]+)"')


def _documented() -> dict[str, str]:
    """Variable → the table row that names it, in README's "Configuration" section."""
    text = ROOT.joinpath("README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("|"):
            for name in re.findall(r"CORRAL_[A-Z0-9_]+", line.split("|")[1]):
                rows[name] = line
    return rows


def _read_by_the_code() -> set[str]:
    names = {f"CORRAL_{field.upper()}" for field in Settings.model_fields}
    for path in ROOT.joinpath("src", "corral").rglob("*.py"):
        names |= set(READS.findall(path.read_text()))
    return names


def test_every_setting_is_in_the_table_and_the_table_holds_no_other() -> None:
    documented, read = set(_documented()), _read_by_the_code()
    assert read - documented == set(), "read by the code, missing from README's tables"
    assert documented - read == set(), "in README's tables, read by nothing"


def test_the_table_gives_the_bounds_settings_enforces() -> None:
    rows = _documented()
    for field, info in Settings.model_fields.items():
        row = rows[f"CORRAL_{field.upper()}"]
        for bound in info.metadata:
            value = getattr(bound, "ge", None) if isinstance(bound, Ge) else \
                getattr(bound, "le", None) if isinstance(bound, Le) else \
                getattr(bound, "gt", None) if isinstance(bound, Gt) else None
            if value is None:
                continue
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            assert re.search(rf"\[[^]]*\b{re.escape(shown)}\b", row) or \
                (isinstance(bound, Gt) and f"> {shown}" in row), (field, bound, row)
