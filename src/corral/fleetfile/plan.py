"""The difference between a fleet file and the environment: what `apply` would create (+),
change (~), replace (-/+) or delete (-), field by field. An artifact differs only by checksum;
a secure value only by a salted digest the control plane answers (the value never leaves
either side in a plan); plain properties are shown, secure ones never."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.fleetfile.document import Application, Cluster, FileRefused, Fleet, Group
from corral.fleetfile.state import Current, desired_status, properties, secure_names

SYMBOLS = {"create": "+", "change": "~", "replace": "-/+", "delete": "-"}
KIND_WORDS = {"serverGroup": "server group", "cluster": "cluster", "application": "application"}
"""A change's kind as the plan and `apply`'s steps print it."""


@dataclass(frozen=True)
class Field:
    name: str
    before: str
    after: str


@dataclass
class Change:
    action: str
    """create, change, replace or delete"""
    kind: str
    """serverGroup, cluster or application"""
    name: str
    fields: list[Field] = field(default_factory=list)
    wanted: Group | Cluster | Application | None = None
    current: dict[str, Any] | None = None
    add: list[str] = field(default_factory=list)
    """Servers to add (groups, clusters)."""
    remove: list[str] = field(default_factory=list)
    """Servers to remove (groups, clusters)."""
    addresses: dict[str, str | None] = field(default_factory=dict)
    """Cluster members whose address changes (or is given, for those added)."""
    redeploy: bool = False
    """A new deployment: artifact, properties or secure properties differ."""
    upload: bool = False
    """The artifact differs: send it (or name it by reference)."""
    secure: dict[str, str | None] = field(default_factory=dict, repr=False)
    """Secure values to send (None: remove one); never printed."""
    source: int | None = None
    """The application whose artifact a by-reference one deploys."""

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "kind": self.kind, "name": self.name,
                "fields": [{"name": f.name, "before": f.before, "after": f.after}
                           for f in self.fields]}


@dataclass
class Plan:
    environment: str
    changes: list[Change]

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        return {a: sum(c.action == a for c in self.changes) for a in SYMBOLS}

    def as_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "changes": [c.as_json() for c in self.changes],
                "summary": self.counts()}


Digests = Callable[[int], dict[str, dict[str, str]]]
"""Application id → each secure property's salted digest (`GET .../secureProperties`)."""
Finder = Callable[["Application"], "tuple[int, str]"]
"""A by-reference artifact → (the application holding it, its sha256)."""


def make(fleet: Fleet, current: Current, environment: str, *, prune: bool,
         digests: Digests, find_source: Finder) -> Plan:
    _check_references(fleet, current, environment, prune)
    changes: list[Change] = []
    for g in fleet.groups:
        changes += _group(g, current.groups.get(g.name))
    for c in fleet.clusters:
        changes += _cluster(c, current.clusters.get(c.name))
    for a in fleet.applications:
        changes += _application(a, current.applications.get(a.name), digests, find_source)
    if prune:
        named = {a.name for a in fleet.applications}
        changes += [Change("delete", "application", n, current=app)
                    for n, app in current.applications.items() if n not in named]
        for kind, have, wanted in (("cluster", current.clusters, fleet.clusters),
                                   ("serverGroup", current.groups, fleet.groups)):
            names = {w.name for w in wanted}
            changes += [Change("delete", kind, n, current=t) for n, t in have.items()
                        if n not in names]
    return Plan(environment, changes)


def _check_references(fleet: Fleet, current: Current, environment: str, prune: bool) -> None:
    where = str(fleet.path)
    for entry, kind, line, names in (
            [(g.name, "server group", g.line, g.servers) for g in fleet.groups]
            + [(c.name, "cluster", c.line, [m.name for m in c.servers]) for c in fleet.clusters]):
        for s in names:
            if s not in current.servers:
                raise FileRefused(f"{where}, line {line}: {kind} {entry}: no server {s!r} in "
                                  f"environment {environment}")
    placed = {s for g in fleet.groups for s in g.servers} | \
        {m.name for c in fleet.clusters for m in c.servers}
    declared = {g.name for g in fleet.groups} | {c.name for c in fleet.clusters}
    for name in sorted(placed):
        holder = current.servers[name].get("serverGroupName") or \
            current.servers[name].get("clusterName")
        if holder and holder not in declared and not prune:
            raise FileRefused(f"{where}: server {name} is in {holder}, which the file does not "
                              f"name: name {holder} in the file, or give --prune to delete it")
    for a in fleet.applications:
        entry = f"{where}, line {a.line}: application {a.name}"
        if a.target in declared:
            continue
        if a.target in current.groups or a.target in current.clusters:
            if prune:
                raise FileRefused(f"{entry}: its target {a.target} is not in the file, so "
                                  "--prune would delete it; name it in the file")
            continue
        server = current.servers.get(a.target)
        if server is None:
            raise FileRefused(f"{entry}: no server, group or cluster {a.target!r} in "
                              f"environment {environment} or in the file")
        if a.target in placed:
            raise FileRefused(f"{entry}: its target {a.target} is a member of a group or "
                              "cluster in the file; deploy to the group or cluster")


def _group(g: Group, now: dict[str, Any] | None) -> list[Change]:
    if now is None:
        return [Change("create", "serverGroup", g.name, [Field("servers", "", ", ".join(
            g.servers))], wanted=g, add=list(g.servers))]
    have = [s["name"] for s in now.get("servers") or []]
    add = [s for s in g.servers if s not in have]
    remove = [s for s in have if s not in g.servers]
    if not add and not remove:
        return []
    return [Change("change", "serverGroup", g.name, [Field("servers", ", ".join(have),
                                                           ", ".join(g.servers))],
                   wanted=g, current=now, add=add, remove=remove)]


def _cluster(c: Cluster, now: dict[str, Any] | None) -> list[Change]:
    wanted = {m.name: m.ip for m in c.servers}
    members = ", ".join(f"{n}" + (f" ({ip})" if ip else "") for n, ip in wanted.items())
    if now is None:
        return [Change("create", "cluster", c.name,
                       [Field("multicastEnabled", "", str(c.multicast).lower()),
                        Field("servers", "", members)],
                       wanted=c, add=list(wanted), addresses=dict(wanted))]
    have = {s["name"]: s.get("serverIp") for s in now.get("servers") or []}
    fields = []
    if bool(now.get("multicastEnabled")) != c.multicast:
        fields.append(Field("multicastEnabled", str(bool(now.get("multicastEnabled"))).lower(),
                            str(c.multicast).lower()))
    add = [n for n in wanted if n not in have]
    remove = [n for n in have if n not in wanted]
    moved = {n: ip for n, ip in wanted.items() if n in have and ip and ip != have[n]}
    if add or remove or moved:
        fields.append(Field("servers", ", ".join(
            f"{n}" + (f" ({ip})" if ip else "") for n, ip in have.items()), members))
    if not fields:
        return []
    return [Change("change", "cluster", c.name, fields, wanted=c, current=now, add=add,
                   remove=remove, addresses={**{n: wanted[n] for n in add}, **moved})]


def _application(a: Application, now: dict[str, Any] | None, digests: Digests,
                 find_source: Finder) -> list[Change]:
    source, sha256 = (None, a.artifact.sha256) if a.artifact.path is not None \
        else find_source(a)
    if now is None:
        kept = [n for n, s in a.secure.items() if s.keep]
        if kept:
            raise FileRefused(f"line {a.line}: application {a.name}: secure property "
                              f"{kept[0]} is kept, but the application does not exist yet")
        made = [Field("target", "", a.target), Field("artifact", "", _artifact_text(a, sha256))]
        made += [Field(f"properties.{k}", "", v) for k, v in a.properties.items()]
        made += [Field(f"secureProperties.{k}", "", "(set)") for k in a.secure]
        if a.desired_status != "STARTED":
            made.append(Field("desiredStatus", "", a.desired_status))
        return [Change("create", "application", a.name, made, wanted=a, redeploy=True,
                       upload=True, secure={k: s.value for k, s in a.secure.items()},
                       source=source)]
    if now["target"]["name"] != a.target:
        kept = [n for n, s in a.secure.items() if s.keep]
        if kept:
            raise FileRefused(f"line {a.line}: application {a.name}: its target changes, so it "
                              f"is made anew, and secure property {kept[0]} cannot be kept: "
                              "give its value ({env: ...} or {file: ...})")
        return [Change("replace", "application", a.name,
                       [Field("target", now["target"]["name"], a.target)], wanted=a,
                       current=now, redeploy=True, upload=True,
                       secure={k: s.value for k, s in a.secure.items() if not s.keep},
                       source=source)]
    fields: list[Field] = []
    upload = now["artifact"].get("sha256") != sha256
    if upload:
        fields.append(Field("artifact", f"sha256 {str(now['artifact'].get('sha256'))[:12]}",
                            _artifact_text(a, sha256)))
    have = properties(now)
    for k in sorted(set(have) | set(a.properties)):
        if have.get(k) != a.properties.get(k):
            fields.append(Field(f"properties.{k}", have.get(k, ""), a.properties.get(k, "")))
    secure = _secure_changes(a, now, digests)
    for k, v in secure.items():
        fields.append(Field(f"secureProperties.{k}", "(set)" if k in secure_names(now) else "",
                            "(removed)" if v is None else "(changed)"))
    redeploy = bool(fields)
    if desired_status(now) != a.desired_status:
        fields.append(Field("desiredStatus", desired_status(now), a.desired_status))
    if not fields:
        return []
    return [Change("change", "application", a.name, fields, wanted=a, current=now,
                   redeploy=redeploy, upload=upload, secure=secure, source=source)]


def _secure_changes(a: Application, now: dict[str, Any], digests: Digests
                    ) -> dict[str, str | None]:
    stored = secure_names(now)
    changes: dict[str, str | None] = {k: None for k in stored if k not in a.secure}
    given = {k: s.value for k, s in a.secure.items() if not s.keep and s.value is not None}
    known = digests(int(now["id"])) if given and stored else {}
    for k, value in given.items():
        d = known.get(k)
        if d is None or not hmac.compare_digest(d["hmacSha256"], _digest(d["salt"], value)):
            changes[k] = value
    for k, s in a.secure.items():
        if s.keep and k not in stored:
            raise FileRefused(f"line {a.line}: application {a.name}: secure property {k} is "
                              "kept, but none is stored")
    return changes


def _digest(salt: str, value: str) -> str:
    """As the control plane makes it (docs/api.md, `GET /applications/{id}/secureProperties`)."""
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


def _artifact_text(a: Application, sha256: str | None) -> str:
    if a.artifact.path is not None:
        return f"{a.artifact.path.name} (sha256 {str(sha256)[:12]})"
    if a.artifact.application:
        env = f" in {a.artifact.environment}" if a.artifact.environment else ""
        return f"the artifact of {a.artifact.application}{env} (sha256 {str(sha256)[:12]})"
    return f"sha256 {str(sha256)[:12]}"
