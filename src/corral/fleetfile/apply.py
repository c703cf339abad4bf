"""A plan carried out through the public API, in a safe order: members leave their groups and
clusters first; then groups and clusters are made and changed; then applications; then pruned
applications, then pruned clusters and groups. Only changed artifacts are sent. A failure stops
at that step and says what was done and what was not; running the file again converges."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from corral.client import ApiError, Client
from corral.client.resources import configuration
from corral.fleetfile.document import Application, Cluster, Group
from corral.fleetfile.plan import KIND_WORDS, SYMBOLS, Change, Plan
from corral.fleetfile.state import Current, desired_status

Report = Callable[[str], None]
FAILED = frozenset({"DEPLOYMENT_FAILED", "FAILED"})


class ApplyFailed(Exception):
    def __init__(self, message: str, done: list[str], left: list[str]) -> None:
        super().__init__(message)
        self.message, self.done, self.left = message, done, left


class Applier:
    def __init__(self, client: Client, current: Current, report: Report) -> None:
        self.client = client
        self.current = current
        self.report = report
        self.ids: dict[str, int] = {}
        """Groups and clusters made by this run, by name."""
        self.touched: list[tuple[int, str, str]] = []
        """(application id, name, desired status) deployed or changed by this run."""

    def run(self, plan: Plan, *, wait: bool = False, timeout: float = 300) -> list[str]:
        steps = list(self._steps(plan))
        done: list[str] = []
        for i, (text, act) in enumerate(steps):
            try:
                act()
            except ApiError as exc:
                raise ApplyFailed(f"{text}: {exc.message}", done,
                                  [t for t, _ in steps[i:]]) from None
            done.append(text)
            self.report(text)
        if wait:
            self._wait(timeout, done)
        return done

    # --- the order ---------------------------------------------------------------------------

    def _steps(self, plan: Plan) -> Iterator[tuple[str, Callable[[], object]]]:
        kept = [c for c in plan.changes if c.action != "delete"]
        pruned = [c for c in plan.changes if c.action == "delete"]
        placed = {s for c in kept if isinstance(c.wanted, Group) for s in c.wanted.servers} | \
            {m.name for c in kept if isinstance(c.wanted, Cluster) for m in c.wanted.servers}
        for c in kept + pruned:  # 1: servers leave, so that they can join another
            if c.kind == "application" or c.current is None:
                continue
            leaving = c.remove if c.action == "change" else \
                [s["name"] for s in c.current.get("servers") or [] if s["name"] in placed]
            for server in leaving:
                yield (f"~ {KIND_WORDS[c.kind]} {c.name}: remove {server}",
                       self._leave(c, server))
        for c in kept:  # 2: groups and clusters
            if c.kind == "serverGroup" and c.action == "create":
                yield f"+ server group {c.name}", self._make_group(c)
            elif c.kind == "cluster" and c.action == "create":
                yield f"+ cluster {c.name}", self._make_cluster(c)
            elif c.kind in ("serverGroup", "cluster") and c.action == "change":
                yield from self._change_members(c)
        for c in kept:  # 3: applications
            if c.kind != "application":
                continue
            if c.action == "replace":
                yield f"- application {c.name} (its target changes)", self._delete(c)
            if c.action in ("create", "replace"):
                yield f"+ application {c.name}", self._create_app(c)
            elif c.action == "change":
                yield f"~ application {c.name}", self._change_app(c)
        for kind in ("application", "cluster", "serverGroup"):  # 4: pruned, applications first
            for c in pruned:
                if c.kind == kind:
                    yield f"{SYMBOLS['delete']} {KIND_WORDS[c.kind]} {c.name}", self._delete(c)

    # --- groups and clusters -----------------------------------------------------------------

    def _server_id(self, name: str) -> int:
        return int(self.current.servers[name]["id"])

    def _target_id(self, name: str) -> int:
        if name in self.ids:
            return self.ids[name]
        found = self.current.target(name)
        assert found is not None  # checked by the plan
        return int(found["id"])

    def _leave(self, c: Change, server: str) -> Callable[[], object]:
        assert c.current is not None
        ident, sid = int(c.current["id"]), self._server_id(server)
        remove = self.client.groups.remove if c.kind == "serverGroup" else \
            self.client.clusters.remove
        return partial(remove, ident, sid)

    def _make_group(self, c: Change) -> Callable[[], object]:
        def act() -> None:
            assert isinstance(c.wanted, Group)
            made = self.client.groups.create(c.name,
                                             [self._server_id(s) for s in c.wanted.servers])
            self.ids[c.name] = int(made["id"])
        return act

    def _make_cluster(self, c: Change) -> Callable[[], object]:
        def act() -> None:
            assert isinstance(c.wanted, Cluster)
            made = self.client.clusters.create(
                c.name, c.wanted.multicast,
                [(self._server_id(m.name), m.ip) for m in c.wanted.servers])
            self.ids[c.name] = int(made["id"])
        return act

    def _change_members(self, c: Change) -> Iterator[tuple[str, Callable[[], object]]]:
        assert c.current is not None
        ident = int(c.current["id"])
        if c.kind == "serverGroup":
            for s in c.add:
                yield (f"~ server group {c.name}: add {s}",
                       partial(self.client.groups.add, ident, self._server_id(s)))
            return
        assert isinstance(c.wanted, Cluster)
        multicast = c.wanted.multicast
        if bool(c.current.get("multicastEnabled")) != multicast:
            yield (f"~ cluster {c.name}: multicastEnabled {str(multicast).lower()}",
                   partial(self.client.clusters.change, ident, multicastEnabled=multicast))
        for s in c.add:
            yield (f"~ cluster {c.name}: add {s}", partial(
                self.client.clusters.add, ident, self._server_id(s), c.addresses.get(s)))
        for s, ip in c.addresses.items():
            if s not in c.add and ip:
                yield (f"~ cluster {c.name}: {s} at {ip}",
                       partial(self.client.clusters.move, ident, self._server_id(s), ip))

    # --- applications ------------------------------------------------------------------------

    @staticmethod
    def _configuration(a: Application, c: Change) -> dict[str, Any]:
        return configuration(a.name, a.properties, c.secure)

    def _create_app(self, c: Change) -> Callable[[], object]:
        def act() -> None:
            a = c.wanted
            assert isinstance(a, Application)
            apps, target = self.client.apps, self._target_id(a.target)
            if a.artifact.path is not None:
                with a.artifact.path.open("rb") as f:
                    made = apps.deploy(a.name, target, (a.artifact.path.name, f),
                                       configuration=self._configuration(a, c))
            else:
                made = apps.deploy(a.name, target, configuration=self._configuration(a, c),
                                   source=c.source)
            if a.desired_status == "STOPPED":
                apps.set_status(int(made["id"]), "STOPPED")
            self.touched.append((int(made["id"]), a.name, a.desired_status))
        return act

    def _change_app(self, c: Change) -> Callable[[], object]:
        def act() -> None:
            a = c.wanted
            assert isinstance(a, Application) and c.current is not None
            apps, ident = self.client.apps, int(c.current["id"])
            if c.redeploy:
                conf, rollout = self._configuration(a, c), a.rollout
                if c.upload and a.artifact.path is not None:
                    with a.artifact.path.open("rb") as f:
                        apps.redeploy(ident, (a.artifact.path.name, f), configuration=conf,
                                      rollout=rollout)
                else:  # another application's artifact, or the same again
                    apps.redeploy(ident, configuration=conf, rollout=rollout,
                                  source=c.source if c.upload else None)
            if a.desired_status != desired_status(c.current):
                apps.set_status(ident, a.desired_status)
            self.touched.append((ident, a.name, a.desired_status))
        return act

    def _delete(self, c: Change) -> Callable[[], object]:
        assert c.current is not None
        ident = int(c.current["id"])
        remove = {"application": self.client.apps.delete, "cluster": self.client.clusters.delete,
                  "serverGroup": self.client.groups.delete}[c.kind]
        return partial(remove, ident)

    # --- waiting -----------------------------------------------------------------------------

    def _wait(self, timeout: float, done: list[str]) -> None:
        """Each application deployed or changed reaches its desired status, as
        `corral app deploy --wait` waits: STARTED with nothing left settling (not UPDATED)."""
        deadline = time.monotonic() + timeout
        waiting = {ident: (name, status) for ident, name, status in self.touched}
        while waiting:
            for ident, (name, status) in list(waiting.items()):
                app = self.client.apps.get(ident)
                if app["lastReportedStatus"] in FAILED:
                    messages = "; ".join(i.get("message") or "" for i in app["serverArtifacts"]
                                         if i.get("message"))
                    raise ApplyFailed(f"application {name}: {app['lastReportedStatus']}"
                                      + (f" ({messages})" if messages else ""), done, [])
                if app["lastReportedStatus"] == status and app["desiredStatus"] == status:
                    self.report(f"  application {name}: {status}")
                    del waiting[ident]
            if waiting and time.monotonic() > deadline:
                names = ", ".join(n for n, _ in waiting.values())
                raise ApplyFailed(f"not settled within {timeout:g} s: {names}", done, [])
            if waiting:
                time.sleep(0.5)
