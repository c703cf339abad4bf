"""An environment written as a fleet file that plans to no change: artifacts by checksum (no
zip files needed), secure properties as `{keep: true}` (their values never leave the control
plane), in the order the API lists things."""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from corral.fleetfile.state import Current, desired_status, properties, secure_names


def document(current: Current, environment: str) -> str:
    doc = CommentedMap()
    doc["environment"] = environment
    doc["serverGroups"] = [
        {"name": name, "servers": [s["name"] for s in g.get("servers") or []]}
        for name, g in current.groups.items()]
    doc["clusters"] = [
        {"name": name, "multicastEnabled": bool(c.get("multicastEnabled")),
         "servers": [{"name": s["name"], **({"ip": s["serverIp"]} if s.get("serverIp") else {})}
                     for s in c.get("servers") or []]}
        for name, c in current.clusters.items()]
    doc["applications"] = [_application(name, a) for name, a in current.applications.items()]
    for key in ("serverGroups", "clusters", "applications"):
        if not doc[key]:
            del doc[key]
    out = io.StringIO()
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.dump(doc, out)
    return out.getvalue()


def _application(name: str, app: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "target": app["target"]["name"],
                             "artifact": {"sha256": app["artifact"]["sha256"]}}
    if properties(app):
        entry["properties"] = properties(app)
    if secure_names(app):
        entry["secureProperties"] = {k: {"keep": True} for k in secure_names(app)}
    entry["desiredStatus"] = desired_status(app)
    return entry
