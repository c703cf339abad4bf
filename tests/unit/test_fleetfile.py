"""Fleet files: read and checked with each refusal's entry and line; planned against an
environment's answers (create, change, replace, delete, field by field; secrets by digest)."""

from __future__ import annotations

import hashlib
import hmac
import io
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from corral.fleetfile import document, plan
from corral.fleetfile.document import FileRefused
from corral.fleetfile.state import Current

SERVICE = "mule.agent.application.properties.service"


def _zip(tmp_path: Path, name: str = "shop.zip", version: str = "1") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", "web: python3 -m http.server $PORT\n")
        z.writestr("version", version)
    (tmp_path / name).write_bytes(buf.getvalue())
    return buf.getvalue()


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
    environment: Production
    serverGroups:
      - name: web
        servers: [web-1, web-2]
    applications:
      - name: shop
        target: web
        artifact: shop.zip
        properties: {greeting: hello, port: 8081, debug: false}
        secureProperties:
          db.password: {env: SHOP_PW}
          api.key: {file: key.txt}
        rollout: {maxParallel: 1}
    """


def test_a_good_file_is_read_whole(tmp_path: Path) -> None:
    data = _zip(tmp_path)
    (tmp_path / "key.txt").write_text("k3y")
    fleet = document.load(_file(tmp_path, GOOD), {"SHOP_PW": "pw"})
    [group] = fleet.groups
    assert (group.name, group.servers, group.line) == ("web", ["web-1", "web-2"], 3)
    [app] = fleet.applications
    assert app.artifact.sha256 == hashlib.sha256(data).hexdigest() and app.line == 6
    assert app.properties == {"greeting": "hello", "port": "8081", "debug": "false"}
    assert {k: s.value for k, s in app.secure.items()} == {"db.password": "pw", "api.key": "k3y"}
    assert "pw" not in repr(app.secure) and app.rollout == {"maxParallel": 1}
    assert app.desired_status == "STARTED"


@pytest.mark.parametrize(("text", "message"), [
    ("applications: [\n", "line 2: not valid YAML"),
    ("serverGroups:\n  - name: g\n    servers: web-1\n",
     "line 3: serverGroups[0] (g).servers: 'web-1' is not of type 'array'"),
    ("applications:\n  - name: a\n    target: t\n    artifact: shop.zip\n    extra: 1\n",
     "line 5: applications[0] (a): 'extra' is not a field here"),
    ("applications:\n  - name: a\n    target: t\n    artifact: shop.zip\n"
     "    secureProperties: {pw: plain-text-secret}\n",
     "line 5: applications[0] (a).secureProperties.pw: is none of the forms allowed here"),
    ("applications:\n  - name: a b\n    target: t\n    artifact: shop.zip\n",
     "line 2: applications[0] (a b).name"),
    ("serverGroups:\n  - {name: g, servers: [s1]}\nclusters:\n"
     "  - {name: g, multicastEnabled: true, servers: [{name: s2}]}\n",
     "line 4: cluster g: the name is already used on line 2"),
    ("clusters:\n  - {name: c, servers: [{name: s2}]}\n",
     "line 2: cluster c: server s2 needs an ip"),
    ("clusters:\n  - {name: c, servers: []}\n", "line 2: clusters[0] (c).servers: [] should be"),
    ("serverGroups:\n  - {name: g, servers: [s1]}\n  - {name: h, servers: [s1]}\n",
     "line 3: server group h: server s1 is already in server group g"),
    ("applications:\n  - {name: a, target: t, artifact: gone.zip}\n",
     "line 2: application a: cannot read the artifact gone.zip"),
    ("applications:\n  - {name: a, target: t, artifact: notazip.txt}\n",
     "line 2: application a: the artifact notazip.txt is not an application"),
    ("applications:\n  - {name: a, target: t, artifact: shop.zip, "
     "secureProperties: {pw: {env: NOPE}}}\n", "the environment variable NOPE is not set"),
    ("applications:\n  - {name: a, target: t, artifact: shop.zip, properties: {pw: x}, "
     "secureProperties: {pw: {keep: true}}}\n", "'pw' is both a property and a secure"),
])
def test_a_bad_file_is_refused_with_its_entry_and_line(tmp_path: Path, text: str,
                                                       message: str) -> None:
    _zip(tmp_path)
    (tmp_path / "notazip.txt").write_text("hello")
    with pytest.raises(FileRefused) as refused:
        document.load(_file(tmp_path, text), {})
    assert message in str(refused.value), str(refused.value)
    assert "plain-text-secret" not in str(refused.value)


def _server(ident: int, name: str, **more: Any) -> dict[str, Any]:
    return {"id": ident, "name": name, **more}


def _current(apps: dict[str, dict[str, Any]] | None = None,
             groups: dict[str, dict[str, Any]] | None = None) -> Current:
    servers = {n: _server(i, n) for i, n in enumerate(("web-1", "web-2", "solo"), 1)}
    return Current(servers, groups or {}, {}, apps or {})


def _app(sha256: str, *, secure: tuple[str, ...] = (), status: str = "STARTED",
         target: str = "web", **props: str) -> dict[str, Any]:
    return {"id": 9, "name": "shop", "target": {"id": 5, "name": target},
            "artifact": {"sha256": sha256}, "desiredStatus": status,
            "configuration": {SERVICE: {"properties": props,
                                        "secureProperties": dict.fromkeys(secure, "********")}}}


def _plan(tmp_path: Path, current: Current, prune: bool = False,
          stored: dict[str, str] | None = None) -> plan.Plan:
    (tmp_path / "key.txt").write_text("k3y")
    fleet = document.load(_file(tmp_path, GOOD), {"SHOP_PW": "pw"})
    salt = "0f" * 8

    def digests(app_id: int) -> dict[str, dict[str, str]]:
        return {k: {"salt": salt, "hmacSha256": hmac.new(salt.encode(), v.encode(),
                                                          hashlib.sha256).hexdigest()}
                for k, v in (stored or {}).items()}

    return plan.make(fleet, current, "Production", prune=prune, digests=digests,
                     find_source=lambda a: (1, "0" * 64))


def test_a_new_environment_is_all_creates(tmp_path: Path) -> None:
    _zip(tmp_path)
    made = _plan(tmp_path, _current())
    assert [(c.action, c.kind, c.name) for c in made.changes] == [
        ("create", "serverGroup", "web"), ("create", "application", "shop")]
    [_, app] = made.changes
    assert {f.name: f.after for f in app.fields}["secureProperties.db.password"] == "(set)"
    assert "pw" not in str(made.as_json())


def test_only_what_differs_is_changed(tmp_path: Path) -> None:
    sha = hashlib.sha256(_zip(tmp_path)).hexdigest()
    group = {"web": {"id": 5, "name": "web", "servers": [{"name": "web-1"}, {"name": "web-2"}]}}
    same = _app(sha, secure=("db.password", "api.key"), greeting="hello", port="8081",
                debug="false")
    assert _plan(tmp_path, _current({"shop": same}, group),
                 stored={"db.password": "pw", "api.key": "k3y"}).empty
    # one secret differs; one stored secret is not in the file; a property differs
    other = _app(sha, secure=("db.password", "api.key", "old"), greeting="hi", port="8081",
                 debug="false")
    made = _plan(tmp_path, _current({"shop": other}, group),
                 stored={"db.password": "other", "api.key": "k3y", "old": "x"})
    [change] = made.changes
    assert change.action == "change" and change.redeploy and not change.upload
    assert {f.name: (f.before, f.after) for f in change.fields} == {
        "properties.greeting": ("hi", "hello"),
        "secureProperties.db.password": ("(set)", "(changed)"),
        "secureProperties.old": ("(set)", "(removed)")}
    assert change.secure == {"db.password": "pw", "old": None}
    # the artifact, and the status only
    moved = _plan(tmp_path, _current({"shop": {**same, "artifact": {"sha256": "1" * 64}}},
                                     group), stored={"db.password": "pw", "api.key": "k3y"})
    assert moved.changes[0].upload and moved.changes[0].redeploy
    stopped = _plan(tmp_path, _current({"shop": {**same, "desiredStatus": "STOPPED"}}, group),
                    stored={"db.password": "pw", "api.key": "k3y"})
    assert [f.name for f in stopped.changes[0].fields] == ["desiredStatus"]
    assert not stopped.changes[0].redeploy


def test_targets_members_and_prune(tmp_path: Path) -> None:
    sha = hashlib.sha256(_zip(tmp_path)).hexdigest()
    groups = {"web": {"id": 5, "name": "web", "servers": [{"name": "web-1"}]},
              "old": {"id": 6, "name": "old", "servers": []}}
    elsewhere = _app(sha, target="solo")
    made = _plan(tmp_path, _current({"shop": elsewhere, "stray": {**elsewhere, "name": "stray"}},
                                    groups), prune=True)
    actions = [(c.action, c.kind, c.name) for c in made.changes]
    assert actions == [("change", "serverGroup", "web"), ("replace", "application", "shop"),
                       ("delete", "application", "stray"), ("delete", "serverGroup", "old")]
    assert made.changes[0].add == ["web-2"] and made.changes[0].remove == []
    assert made.counts() == {"create": 0, "change": 1, "replace": 1, "delete": 2}
    # without --prune, what the file does not name is not listed
    assert [c.action for c in _plan(tmp_path, _current({"shop": elsewhere}, groups)).changes] \
        == ["change", "replace"]


def test_unknown_servers_and_targets_are_refused(tmp_path: Path) -> None:
    _zip(tmp_path)
    current = _current()
    del current.servers["web-2"]
    with pytest.raises(FileRefused, match="line 3: server group web: no server 'web-2'"):
        _plan(tmp_path, current)
    held = _current()
    held.servers["web-1"]["serverGroupName"] = "elsewhere"
    with pytest.raises(FileRefused, match="server web-1 is in elsewhere, which the file"):
        _plan(tmp_path, held)
