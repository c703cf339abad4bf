"""Application `configuration` as ARM's deployers send it, and the properties within."""

from __future__ import annotations

import json
import re
from typing import Any

from corral.errors import InvalidInput

PROPERTIES_SERVICE = "mule.agent.application.properties.service"
SECURE_PROPERTIES = "secureProperties"
"""Beside `properties` in the service: write-only values (ADR 0011, `domain/secure.py`)."""
PROPERTY_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,127}")
MAX_PROPERTIES = 500
MAX_SECURE_PROPERTIES = 200
MAX_VALUE_CHARS = 32 * 1024
MAX_CONFIGURATION_CHARS = 256 * 1024
LOGGING_SERVICE = "mule.agent.logging.service"
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")
MAX_LOG_LEVELS = 100
# a logger name (package, class, `root`): it ends up in an environment variable and a file,
# so nothing that could start another line or entry
LOG_SCOPE = re.compile(r"[A-Za-z0-9_.$*-]{0,255}")


def parse_configuration(raw: object) -> dict[str, Any]:
    """Accept the configuration as a JSON text (multipart) or an object; check its shape."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        if len(raw) > MAX_CONFIGURATION_CHARS:
            raise InvalidInput(f"configuration must be at most {MAX_CONFIGURATION_CHARS} characters")
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"configuration is not valid JSON: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput("configuration must be a JSON object")
    service = raw.get(PROPERTIES_SERVICE)
    if service is not None:
        if not isinstance(service, dict):
            raise InvalidInput(f"configuration.{PROPERTIES_SERVICE} must be an object")
        props = service.get("properties", {})
        if not isinstance(props, dict):
            raise InvalidInput(f"configuration.{PROPERTIES_SERVICE}.properties must be an object")
        if len(props) > MAX_PROPERTIES:
            raise InvalidInput(f"at most {MAX_PROPERTIES} properties are allowed")
        for key, value in props.items():
            check_property(key, value)
        secure = service.get(SECURE_PROPERTIES, {})
        if not isinstance(secure, dict):
            raise InvalidInput(
                f"configuration.{PROPERTIES_SERVICE}.{SECURE_PROPERTIES} must be an object")
        if len(secure) > MAX_SECURE_PROPERTIES:
            raise InvalidInput(f"at most {MAX_SECURE_PROPERTIES} secure properties are allowed")
        for key, value in secure.items():
            check_secure_property(key, value)
        both = sorted(k for k, v in secure.items() if v is not None and k in props)
        if both:
            raise InvalidInput(f"{both[0]!r} cannot be both a property and a secure property")
    return raw


def check_property(key: str, value: object) -> None:
    """Keys become environment variable names on the server; values reach the process byte
    for byte, so only what cannot be passed is refused (NUL), and their size is bounded."""
    if not PROPERTY_KEY.fullmatch(key):
        raise InvalidInput(
            f"property key {key[:64]!r} must be 1–128 letters, digits, '_', '.' or '-', "
            "starting with a letter or '_'")
    if isinstance(value, (dict, list)):
        raise InvalidInput(f"property {key!r} must be a string, number or boolean")
    text = _as_text(value)
    if len(text) > MAX_VALUE_CHARS:
        raise InvalidInput(f"property {key!r} is longer than {MAX_VALUE_CHARS} characters")
    if "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise InvalidInput(f"property {key!r} contains a NUL or an unpaired surrogate")


def check_secure_property(key: str, value: object) -> None:
    """As a property's, but the value must be a string (or null, to remove it on a redeploy),
    and no message ever quotes it."""
    if not PROPERTY_KEY.fullmatch(key):
        raise InvalidInput(
            f"secure property key {key[:64]!r} must be 1–128 letters, digits, '_', '.' or '-', "
            "starting with a letter or '_'")
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidInput(f"secure property {key!r} must be a string (or null to remove it)")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidInput(f"secure property {key!r} is longer than {MAX_VALUE_CHARS} characters")
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise InvalidInput(f"secure property {key!r} contains a NUL or an unpaired surrogate")


def from_properties(name: str, properties: dict[str, str],
                    secure: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The configuration that carries these properties (the console's form gives them)."""
    service: dict[str, Any] = {"applicationName": name, "properties": properties}
    if secure:
        service[SECURE_PROPERTIES] = secure
    return parse_configuration({PROPERTIES_SERVICE: service})


def parse_properties_text(text: str) -> dict[str, str]:
    """`key=value` lines, as in a Java properties file; blank lines and `#` comments skipped."""
    props = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def properties_of(configuration: dict[str, Any]) -> dict[str, str]:
    service = configuration.get(PROPERTIES_SERVICE) or {}
    props = service.get("properties") or {}
    return {str(k): _as_text(v) for k, v in props.items()}


def secure_properties_of(configuration: dict[str, Any] | None) -> dict[str, Any]:
    """The secure properties as the configuration holds them (given, or sealed when stored)."""
    service = (configuration or {}).get(PROPERTIES_SERVICE)
    secure = service.get(SECURE_PROPERTIES) if isinstance(service, dict) else None
    return dict(secure) if isinstance(secure, dict) else {}


def with_application_name(configuration: dict[str, Any], name: str) -> dict[str, Any]:
    """ARM's deployers name the application inside the properties service; keep it true."""
    if PROPERTIES_SERVICE not in configuration:
        return configuration
    service = dict(configuration[PROPERTIES_SERVICE])
    service["applicationName"] = name
    return {**configuration, PROPERTIES_SERVICE: service}


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def check_log_levels(entries: object) -> None:
    """ARM's shape: `[{artifactName, scopeLoggingConfigurations: [{scope, logLevel}]}]`."""
    if entries is None:
        return
    if not isinstance(entries, list) or len(entries) > MAX_LOG_LEVELS:
        raise InvalidInput(f"applicationLogLevels must be a list of at most {MAX_LOG_LEVELS} entries")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("artifactName"), str):
            raise InvalidInput("each applicationLogLevels entry needs an artifactName")
        scopes = entry.get("scopeLoggingConfigurations") or []
        if not isinstance(scopes, list) or len(scopes) > MAX_LOG_LEVELS:
            raise InvalidInput("scopeLoggingConfigurations must be a list of at most "
                               f"{MAX_LOG_LEVELS} entries")
        for item in scopes:
            if not isinstance(item, dict) or item.get("logLevel") not in LOG_LEVELS:
                raise InvalidInput(f"logLevel must be one of {', '.join(LOG_LEVELS)}")
            scope = item.get("scope") or ""
            if not isinstance(scope, str) or not LOG_SCOPE.fullmatch(scope):
                raise InvalidInput("a log scope is a logger name: letters, digits and . _ $ * -"
                                   ", at most 255")


def log_levels_of(configuration: dict[str, Any] | None, application: str) -> dict[str, str]:
    """One application's levels (scope → level) from a logging component's configuration;
    anything malformed is left out (it was refused on the way in)."""
    found: dict[str, str] = {}
    for entry in (configuration or {}).get("applicationLogLevels") or []:
        if not isinstance(entry, dict) or entry.get("artifactName") != application:
            continue
        for item in entry.get("scopeLoggingConfigurations") or []:
            if isinstance(item, dict) and item.get("logLevel") in LOG_LEVELS:
                scope = item.get("scope") or "root"
                if isinstance(scope, str) and LOG_SCOPE.fullmatch(scope):
                    found[scope] = item["logLevel"]
    return found
