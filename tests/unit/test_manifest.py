"""Procfile and corral.toml parsing; property substitution and environment names."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.agent.archive import ArchiveRefused
from corral.agent.manifest import environment_names, load, parse_procfile, substitute


def test_procfile() -> None:
    text = "# comment\n\nweb: python -m app --port $PORT\nworker:  celery run \n"
    assert parse_procfile(text) == {"web": "python -m app --port $PORT", "worker": "celery run"}
    for bad in ("just words", "", "# only a comment\n"):
        with pytest.raises(ArchiveRefused):
            parse_procfile(bad)


def test_substitution_quotes_and_leaves_unknown() -> None:
    props = {"http.port": "8081", "msg": "a b; rm -rf /"}
    assert substitute("run --port ${http.port}", props) == "run --port 8081"
    assert substitute("echo ${msg}", props) == "echo 'a b; rm -rf /'"
    assert substitute("echo ${HOME} $PORT", props) == "echo ${HOME} $PORT"


def test_environment_names() -> None:
    assert environment_names({"http.port": "1", "my-key": "2"}) == {
        "http.port": "1", "HTTP_PORT": "1", "my-key": "2", "MY_KEY": "2"}


def test_corral_toml(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: x\n")
    assert load(tmp_path).health is None
    (tmp_path / "corral.toml").write_text(
        '[health]\nhttp = "/ok"\ntimeout = 5\n[stop]\ntimeout = 2\n[properties]\na = 1\n')
    m = load(tmp_path)
    assert m.health is not None and m.health.http == "/ok" and m.health.timeout == 5
    assert m.stop_timeout == 2 and m.properties == {"a": "1"}
    (tmp_path / "corral.toml").write_text("[health\n")
    with pytest.raises(ArchiveRefused, match="corral.toml"):
        load(tmp_path)
