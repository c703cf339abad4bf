"""OpenAPI links from each create to what takes the new object's id (get, change, delete, its
members): a client, or schemathesis' stateful phase, can follow them with real ids."""

from __future__ import annotations

import re
from typing import Any


def _ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _name(method: str, path: str) -> str:
    """A link's name, in the characters OpenAPI allows there: `get.serverGroups.group_id`."""
    return ".".join([method, *(re.sub(r"[^A-Za-z0-9_-]", "", p)
                               for p in path.split("/")[4:] if p)])


def created(status: int, pointer: str,
            *targets: tuple[str, str, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a create answering `status`, whose new id is at `pointer` in its body;
    each target is (method, path, the path parameter that takes the id)."""
    return {status: {"description": "created", "links": {
        _name(method, path): {"operationRef": _ref(path, method),
                                     "parameters": {param: f"$response.body#{pointer}"}}
        for method, path, param in targets}}}
