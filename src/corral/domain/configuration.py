"""Application `configuration` as ARM's deployers send it, and the properties within."""

from __future__ import annotations

import json
from typing import Any

from corral.domain.errors import InvalidInput

PROPERTIES_SERVICE = "mule.agent.application.properties.service"


def parse_configuration(raw: object) -> dict[str, Any]:
    """Accept the configuration as a JSON text (multipart) or an object; check its shape."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
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
        for key, value in props.items():
            if isinstance(value, (dict, list)):
                raise InvalidInput(f"property {key!r} must be a string, number or boolean")
    return raw


def properties_of(configuration: dict[str, Any]) -> dict[str, str]:
    service = configuration.get(PROPERTIES_SERVICE) or {}
    props = service.get("properties") or {}
    return {str(k): _as_text(v) for k, v in props.items()}


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
