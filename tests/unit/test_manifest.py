"""Procfile and corral.toml parsing; property substitution and environment names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from corral.agent.archive import ArchiveRefused
from corral.agent.manifest import environment_names, load, substitute
from corral.bundle import BundleRefused, parse_procfile


def test_procfile() -> None:
    text = "# comment\n\nweb: python -m app --port $PORT\nworker:  celery run \n"
    assert parse_procfile(text) == {"web": "python -m app --port $PORT", "worker": "celery run"}
    for bad in ("just words", "", "# only a comment\n"):
        with pytest.raises(BundleRefused):
            parse_procfile(bad)


HOSTILE = "$(touch pwned) `touch pwned2` ' \" a  b * ; rm -rf / \\ ${x}"


def _sh(command: str, env: dict[str, str], cwd: Path) -> str:
    return subprocess.run(["/bin/sh", "-c", command], env=env, cwd=cwd, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("procfile_command, expected", [
    ('printf %s "${msg}"', "{v}"),  # inside double quotes
    ("printf %s ${msg}", "{v}"),  # bare: no word splitting, no globbing
    ("printf %s '[${msg}]'", "[{v}]"),  # inside single quotes, as before: substituted
    ('printf %s "[${msg}]" [${msg}]', "[{v}][{v}]"),
    ("printf %s \\${msg}", "${{msg}}"),  # escaped: left to the shell, which prints it
])
def test_substitution_never_lets_the_shell_parse_a_value(
    tmp_path: Path, procfile_command: str, expected: str
) -> None:
    command, env = substitute(procfile_command, {"msg": HOSTILE})
    assert HOSTILE not in command
    assert _sh(command, env, tmp_path) == expected.format(v=HOSTILE)
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_substitution_leaves_unknown_names_to_the_shell() -> None:
    assert substitute("echo ${HOME} $PORT", {"msg": "x"}) == ("echo ${HOME} $PORT", {})


def test_environment_names() -> None:
    assert environment_names({"http.port": "1", "my-key": "2"}) == {
        "http.port": "1", "HTTP_PORT": "1", "my-key": "2", "MY_KEY": "2"}
    # a name that cannot be an environment variable is left out, not fatal
    assert environment_names({"x=y": "1", "ok": "2"}) == {"ok": "2", "OK": "2"}


def test_corral_toml(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: x\n")
    assert load(tmp_path).health is None
    (tmp_path / "corral.toml").write_text(
        '[health]\nhttp = "/ok"\ntimeout = 5\n[stop]\ntimeout = 2\n[properties]\na = 1\n')
    m = load(tmp_path)
    assert m.health is not None and m.health.http == "/ok" and m.health.timeout == 5
    assert m.stop_timeout == 2 and m.properties == {"a": "1"}
    (tmp_path / "corral.toml").write_text("[health\n")
    with pytest.raises(ArchiveRefused, match=r"corral\.toml"):
        load(tmp_path)
