"""What an unpacked application declares: Procfile processes and optional `corral.toml`.

    # corral.toml
    [health]
    http = "/healthz"      # GET http://127.0.0.1:$PORT/healthz must answer < 400
    # tcp = true           # or: something accepts connections on $PORT
    timeout = 60           # seconds to become healthy before DEPLOYMENT_FAILED
    [stop]
    timeout = 10           # seconds between SIGTERM and SIGKILL
    [properties]           # defaults, overridden by the application's properties
    greeting = "hello"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.agent.archive import ArchiveRefused
from corral.bundle import BundleRefused, parse_procfile

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")


@dataclass(frozen=True)
class HealthCheck:
    http: str | None = None
    tcp: bool = False
    timeout: float = 60.0


@dataclass(frozen=True)
class Manifest:
    processes: dict[str, str]
    health: HealthCheck | None = None
    stop_timeout: float = 10.0
    properties: dict[str, str] = field(default_factory=dict)


def load(app_dir: Path) -> Manifest:
    try:
        processes = parse_procfile((app_dir / "Procfile").read_text())
    except FileNotFoundError as exc:
        raise ArchiveRefused("no Procfile at the archive root") from exc
    except UnicodeDecodeError as exc:
        raise ArchiveRefused("Procfile is not UTF-8 text") from exc
    except BundleRefused as exc:
        raise ArchiveRefused(str(exc)) from exc
    toml_path = app_dir / "corral.toml"
    if not toml_path.is_file():
        return Manifest(processes)
    try:
        data = tomllib.loads(toml_path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ArchiveRefused(f"corral.toml is invalid: {exc}") from exc
    health = None
    if isinstance(data.get("health"), dict):
        h = data["health"]
        health = HealthCheck(
            http=str(h["http"]) if h.get("http") else None,
            tcp=bool(h.get("tcp", False)),
            timeout=float(h.get("timeout", 60)),
        )
    stop: dict[str, Any] = data["stop"] if isinstance(data.get("stop"), dict) else {}
    props: dict[str, Any] = (data["properties"] if isinstance(data.get("properties"), dict)
                             else {})
    return Manifest(
        processes=processes,
        health=health,
        stop_timeout=float(stop.get("timeout", 10)),
        properties={str(k): str(v) for k, v in props.items()},
    )


def substitute(command: str, properties: dict[str, str]) -> tuple[str, dict[str, str]]:
    """`${prop}` in a Procfile command, without ever letting the shell parse the value.

    Each referenced property is passed in an environment variable of its own and the placeholder
    becomes a quoted reference to it (`"${CORRAL_PROPERTY_0}"`), quoted to fit where it stands:
    plain, inside double quotes, or inside single quotes. The shell expands a variable once and
    never reads `$(...)`, backticks or quotes in what it expands, and the quotes stop word
    splitting and globbing: the value arrives byte for byte. Unknown names stay for the shell.
    Returns the command and the variables to add to the process environment."""
    out: list[str] = []
    env: dict[str, str] = {}
    state = "plain"  # or "single", "double"
    i = 0
    while i < len(command):
        c = command[i]
        if state == "single":
            if c == "'":
                state = "plain"
        elif c == "\\":
            out.append(command[i : i + 2])
            i += 2
            continue
        elif c == "'" and state == "plain":
            state = "single"
        elif c == '"':
            state = "double" if state == "plain" else "plain"
        if c == "$":
            m = _PLACEHOLDER.match(command, i)
            if m and m.group(1) in properties:
                key = m.group(1)
                var = property_variable(key)
                env[var] = properties[key]
                out.append({"plain": f'"${{{var}}}"', "double": f"${{{var}}}",
                            "single": f"'\"${{{var}}}\"'"}[state])
                i = m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out), env


def property_variable(key: str) -> str:
    """The environment variable that carries a property for `${key}`: unique per key."""
    return "CORRAL_PROPERTY_" + key.encode().hex().upper()


_ENV_NAME = re.compile(r"[^=\x00]+")


def environment_names(properties: dict[str, str]) -> dict[str, str]:
    """Each property under its own name and upper-cased with `.`/`-` as `_`. A name that cannot
    be an environment variable (`=` or NUL in it) is left out, not fatal."""
    env: dict[str, str] = {}
    for key, value in properties.items():
        if not _ENV_NAME.fullmatch(key) or "\x00" in value:
            continue
        env[key] = value
        env[re.sub(r"[.\-]", "_", key).upper()] = value
    return env
