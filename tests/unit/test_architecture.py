"""The import rules of docs/architecture.md hold: the test reads the table there, so the
document and the code cannot disagree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "corral"
BOTTOM = {"errors", "wire", "jsontext", "bundle", "config", "__version__"}


def _rules() -> dict[str, set[str]]:
    rules = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        match = re.fullmatch(r"\| `([\w_]+)` \|(.*)\|", line.strip())
        if match:
            rules[match.group(1)] = set(re.findall(r"`([\w_]+)`", match.group(2)))
    return rules


def _imports(path: Path) -> set[str]:
    """The parts of Corral a module imports (anywhere in it, lazily imported ones too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "corral":
                names += [f"corral.{a.name}" for a in node.names]
        else:
            continue
        found.update(n.split(".")[1] for n in names if n.startswith("corral."))
    return found


def test_every_part_has_a_rule() -> None:
    rules = _rules()
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    missing = parts - set(rules) - BOTTOM - {"__init__"}
    assert not missing, f"docs/architecture.md has no import rule for {sorted(missing)}"


def test_imports_follow_the_rules() -> None:
    rules = _rules()
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if part == "__init__":
            continue
        allowed = BOTTOM | (set() if part in BOTTOM else rules[part])
        for target in _imports(path) - {part} - allowed:
            broken.append(f"{path.relative_to(ROOT)} imports corral.{target}")
    assert not broken, "imports against docs/architecture.md:\n" + "\n".join(broken)


def test_the_rules_can_fail() -> None:
    """The checker sees a forbidden import (api reaching into web) for what it is."""
    assert "web" not in _rules()["api"] and "api" not in _rules()["web"]
    assert _imports(PACKAGE / "app.py") >= {"api", "web"}


def test_the_agent_imports_no_signing_code() -> None:
    """The agent makes keys and CSRs and checks certificates (`pki.keys`); only the control
    plane signs (`pki.authority`)."""
    reaching = []
    for path in sorted((PACKAGE / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module == "corral.pki.authority" or (
                    module == "corral.pki" and any(a.name == "authority" for a in node.names)):
                reaching.append(str(path.relative_to(ROOT)))
    assert reaching == []
    uses_keys = [p for p in (PACKAGE / "agent").rglob("*.py") if "corral.pki.keys" in p.read_text()]
    assert uses_keys, "the agent's key handling moved: this test checks nothing"
