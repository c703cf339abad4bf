"""A fleet file read, checked against its schema and against itself, and resolved (artifact
files read and hashed, secure values taken from where the entries say): everything that can be
refused is refused here, before anything changes. Each refusal names the entry and its line."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from corral.bundle import ZipRefused, check_bundle

MAX_FILE_BYTES = 4 * 1024 * 1024


class FileRefused(Exception):
    """The file cannot be used; nothing was changed."""


def schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@dataclass(frozen=True)
class Artifact:
    """A zip of the file's folder (`path`, `sha256`), another application's stored artifact
    (`application`, `environment`), or a stored one by checksum (`sha256` alone)."""

    path: Path | None = None
    sha256: str | None = None
    application: str | None = None
    environment: str | None = None


@dataclass(frozen=True)
class Secret:
    """A secure property's value as the file says where to find it; `keep`: whatever is
    stored. The value itself is never printed."""

    value: str | None = field(repr=False)
    keep: bool = False
    source: str = ""


@dataclass
class Group:
    name: str
    servers: list[str]
    line: int


@dataclass
class ClusterMember:
    name: str
    ip: str | None


@dataclass
class Cluster:
    name: str
    multicast: bool
    servers: list[ClusterMember]
    line: int


@dataclass
class Application:
    name: str
    target: str
    artifact: Artifact
    properties: dict[str, str]
    secure: dict[str, Secret]
    desired_status: str
    rollout: dict[str, Any] | None
    line: int


@dataclass
class Fleet:
    path: Path
    environment: str | None
    groups: list[Group] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    applications: list[Application] = field(default_factory=list)


def load(path: Path, environ: dict[str, str] | None = None) -> Fleet:
    """The fleet `path` describes; FileRefused names what is wrong and where."""
    environ = dict(os.environ) if environ is None else environ
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise FileRefused(f"{path}: larger than {MAX_FILE_BYTES // 1024 // 1024} MiB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileRefused(f"cannot read {path}: {exc}") from None
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FileRefused(f"{path}{where}: not valid YAML: {problem}") from None
    if data is None:
        data = {}
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(data),
                    key=lambda e: (_line(data, list(e.absolute_path)),
                                   len(list(e.absolute_path))))
    if errors:
        first = errors[0]
        at = list(first.absolute_path)
        line = _line(data, at + _unexpected(first)[:1])
        raise FileRefused(f"{path}, line {line}: {_entry(data, at)}: {_message(first)}")
    fleet = Fleet(path=path, environment=data.get("environment"))
    folder = path.parent
    for i, g in enumerate(data.get("serverGroups") or []):
        fleet.groups.append(Group(str(g["name"]), [str(s) for s in g.get("servers") or []],
                                  _line(data, ["serverGroups", i])))
    for i, c in enumerate(data.get("clusters") or []):
        fleet.clusters.append(Cluster(
            str(c["name"]), bool(c.get("multicastEnabled", False)),
            [ClusterMember(str(m["name"]), m.get("ip")) for m in c.get("servers") or []],
            _line(data, ["clusters", i])))
    for i, a in enumerate(data.get("applications") or []):
        line = _line(data, ["applications", i])
        entry = f"{path}, line {line}: application {a['name']}"
        fleet.applications.append(Application(
            name=str(a["name"]), target=str(a["target"]),
            artifact=_artifact(a["artifact"], folder, entry),
            properties={str(k): _text(v) for k, v in (a.get("properties") or {}).items()},
            secure={str(k): _secret(str(k), v, folder, environ, entry)
                    for k, v in (a.get("secureProperties") or {}).items()},
            desired_status=str(a.get("desiredStatus") or "STARTED"),
            rollout=dict(a["rollout"]) if a.get("rollout") else None, line=line))
    _check_itself(fleet)
    return fleet


def _check_itself(fleet: Fleet) -> None:
    """What the schema cannot say: names used twice, a server in two places."""
    where = str(fleet.path)
    targets: dict[str, int] = {}
    for kind, entries in (("server group", fleet.groups), ("cluster", fleet.clusters)):
        for e in entries:
            if e.name in targets:
                raise FileRefused(f"{where}, line {e.line}: {kind} {e.name}: the name is "
                                  f"already used on line {targets[e.name]}")
            targets[e.name] = e.line
    for c in fleet.clusters:
        lacking = [m.name for m in c.servers if not c.multicast and not m.ip]
        if lacking:
            raise FileRefused(f"{where}, line {c.line}: cluster {c.name}: server {lacking[0]} "
                              "needs an ip (a unicast cluster's members find each other by it)")
    placed: dict[str, str] = {}
    for g in fleet.groups:
        for s in g.servers:
            _place(placed, s, f"server group {g.name}", where, g.line)
    for c in fleet.clusters:
        for m in c.servers:
            _place(placed, m.name, f"cluster {c.name}", where, c.line)
    apps: dict[str, int] = {}
    for a in fleet.applications:
        if a.name in apps:
            raise FileRefused(f"{where}, line {a.line}: application {a.name}: the name is "
                              f"already used on line {apps[a.name]}")
        apps[a.name] = a.line
        both = sorted(set(a.properties) & set(a.secure))
        if both:
            raise FileRefused(f"{where}, line {a.line}: application {a.name}: {both[0]!r} is "
                              "both a property and a secure property")


def _place(placed: dict[str, str], server: str, entry: str, where: str, line: int) -> None:
    if server in placed:
        raise FileRefused(f"{where}, line {line}: {entry}: server {server} is already in "
                          f"{placed[server]}")
    placed[server] = entry


def _artifact(given: Any, folder: Path, entry: str) -> Artifact:
    if isinstance(given, str):
        path = (folder / given).resolve()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FileRefused(f"{entry}: cannot read the artifact {given}: "
                              f"{exc.strerror or exc}") from None
        try:
            check_bundle(io.BytesIO(data))
        except ZipRefused as exc:
            raise FileRefused(f"{entry}: the artifact {given} is not an application: {exc}") \
                from None
        return Artifact(path=path, sha256=hashlib.sha256(data).hexdigest())
    if "sha256" in given:
        return Artifact(sha256=str(given["sha256"]))
    return Artifact(application=str(given["application"]),
                    environment=given.get("environment"))


def _secret(name: str, given: Any, folder: Path, environ: dict[str, str], entry: str) -> Secret:
    if given.get("keep"):
        return Secret(None, keep=True, source="kept")
    if "env" in given:
        variable = str(given["env"])
        if variable not in environ:
            raise FileRefused(f"{entry}: secure property {name}: the environment variable "
                              f"{variable} is not set")
        return Secret(environ[variable], source=f"${variable}")
    path = (folder / str(given["file"])).resolve()
    try:
        return Secret(path.read_text(encoding="utf-8"), source=str(given["file"]))
    except (OSError, UnicodeDecodeError) as exc:
        raise FileRefused(f"{entry}: secure property {name}: cannot read {given['file']}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _line(data: Any, where: list[Any]) -> int:
    """The 1-based line of the deepest node along `where` that knows its line."""
    line, node = 1, data
    for step in where:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None:
                line = (lc.key(step) if isinstance(step, str) else lc.item(step))[0] + 1
            node = node[step]
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line


def _entry(data: Any, where: list[Any]) -> str:
    """`applications[2] (storefront).artifact`: where in the file, with the entry's name."""
    text, node = "", data
    for step in where:
        if isinstance(step, int):
            text += f"[{step}]"
            try:
                node = node[step]
                name = node.get("name") if hasattr(node, "get") else None
                if isinstance(name, str):
                    text += f" ({name})"
            except (IndexError, TypeError, KeyError):
                break
        else:
            text += f".{step}" if text else str(step)
            try:
                node = node[step]
            except (KeyError, TypeError):
                break
    return text or "the file"


def _unexpected(error: jsonschema.ValidationError) -> list[str]:
    """The fields an `additionalProperties: false` object was given and does not have."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return []
    known = set(error.schema.get("properties") or {}) if isinstance(error.schema, dict) else set()
    return sorted(str(k) for k in error.instance if k not in known)


def _message(error: jsonschema.ValidationError) -> str:
    """The schema's complaint, without echoing a whole value back."""
    extra = _unexpected(error)
    if extra:
        return f"{extra[0]!r} is not a field here"
    if "secureProperties" in error.absolute_path:  # never echo what may be a secret
        return ("is none of the forms allowed here: {env: VARIABLE}, {file: PATH} or "
                "{keep: true}; a value never goes in the file")
    if error.validator == "oneOf" and error.context:
        return "is none of the forms allowed here: " + "; ".join(
            sorted({_short(e.message) for e in error.context}))
    return _short(error.message)


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."
