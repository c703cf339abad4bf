"""The state machine: Hypothesis generates sequences of calls, each made on the real control
plane and in the model (`model.py`); after every step every list of every API is compared with
the model.

One rule per state-changing call. A rule picks its actor (the bootstrap admin, or a user the
sequence created with some role and environments), its environment and its ids from what the
sequence has seen, deleted ones included, so that refusals and unknown ids are exercised as much
as successes. The model says which status the call must answer; the call must answer exactly
that, and a refused call must change nothing (the next comparison would see it)."""

from __future__ import annotations

import hashlib
import io
import sys
import uuid
import zipfile
from collections import Counter
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from tests.arm_shapes import check_answer
from tests.model.backends import Backend
from tests.model.model import ROLES, Expect, Model, User

HYBRID = "/hybrid/api/v1"
NAMES = st.sampled_from(["a", "b", "web", "db", "x-1"])
"""Few names, so that they collide often (uniqueness is part of the contract)."""
ARTIFACTS = ("v1", "v2", "v3")
RESTARTS_PER_SEQUENCE = 2
"""A restart costs seconds through a real process; when Hypothesis enables few rules in a
sequence, it would otherwise be most of its steps."""


def bundle_zip(label: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", "web: python3 -m http.server $PORT\n")
        z.writestr("VERSION", label)
    return buf.getvalue()


ZIPS = {label: bundle_zip(label) for label in ARTIFACTS}
SHA256 = {label: hashlib.sha256(data).hexdigest() for label, data in ZIPS.items()}


class Disagreement(AssertionError):
    """The control plane answered otherwise than the model promises."""


class CorralMachine(RuleBasedStateMachine):
    """Bound to a backend by `bind` (a subclass per test)."""

    backend: Backend
    steps = 0
    sequences = 0
    outcomes: Counter[tuple[str, int]]
    """(call, status) → how often: what the run exercised."""

    envs = Bundle("envs")
    servers = Bundle("servers")
    groups = Bundle("groups")
    clusters = Bundle("clusters")
    apps = Bundle("apps")
    users = Bundle("users")

    def __init__(self) -> None:
        super().__init__()
        type(self).sequences += 1
        self.admin = self.backend.admin_token()
        self.org = self.backend.organization(self.admin)
        self.model = Model(self.org)
        self.tokens: dict[str | None, str] = {None: self.admin}
        self.tag = uuid.uuid4().hex[:8]
        """Names that are organization-wide (environments, users) carry it: earlier
        sequences on the same control plane used the same short names."""
        r = self.call("GET", f"/accounts/api/organizations/{self.org}/environments")
        self.model.other_envs = r.json()["total"]
        self.home = self._create_env(f"env-{self.tag}")
        self.first = self._register(self.home, "s0", seen=True)
        self.checks = 0
        self.restarts = 0

    # --- calling ------------------------------------------------------------------------

    def call(self, method: str, path: str, *, actor: User | None = None,
             env: str | None = None, **kw: Any) -> Any:
        """One call as `actor` (None: the admin) in `env`; never a 5xx."""
        headers = {"Authorization": f"Bearer {self.tokens[actor.id if actor else None]}",
                   "X-ANYPNT-ORG-ID": self.org}
        if env is not None:
            headers["X-ANYPNT-ENV-ID"] = env
        r = self.backend.http.request(method, path, headers=headers, **kw)
        assert r.status_code < 500, f"{method} {path} answered {r.status_code}: {r.text[:800]}"
        check_answer(path.removeprefix(HYBRID), r)
        return r

    def expect(self, expected: Expect, r: Any, what: str) -> None:
        self.outcomes[(sys._getframe(1).f_code.co_name, r.status_code)] += 1  # the rule
        if r.status_code != expected.status:
            raise Disagreement(f"{what}: expected {expected.status} ({expected.why}), got "
                          f"{r.status_code}: {r.text[:800]}")
        if r.status_code >= 400:
            body = r.json()
            assert isinstance(body.get("message"), str) and body["message"], body

    def new_id(self, space: str, value: Any) -> Any:
        assert value not in self.backend.ids[space], f"{space} id {value} was given before"
        self.backend.ids[space].add(value)
        return value

    def refused(self, actor: User | None, env: str | None, role: str) -> Expect | None:
        return self.model.refusal(actor, env, role)

    # --- set-up -------------------------------------------------------------------------

    @initialize(target=envs)
    def first_environment(self) -> Any:
        """Each sequence starts in an environment of its own..."""
        return self.home

    @initialize(target=servers)
    def first_server(self) -> Any:
        """...with a server that connected once, so that deployments happen from the first
        steps."""
        return self.first

    def _create_env(self, name: str) -> str:
        r = self.call("POST", f"/accounts/api/organizations/{self.org}/environments",
                      json={"name": name, "type": "sandbox"})
        assert r.status_code == 201, r.text
        env = str(r.json()["id"])
        self.model.env_created(env, name)
        return env

    def _register(self, env: str, name: str, seen: bool) -> int | None:
        r = self.call("GET", f"{HYBRID}/servers/registrationToken", env=env)
        if env not in self.model.envs:
            self.expect(Expect(403), r, "a registration token of a deleted environment")
            return None
        assert r.status_code == 200, r.text
        expected = self.model.register(env, name)
        reg = self.backend.http.request(
            "POST", f"{HYBRID}/servers",
            headers={"Authorization": f"Bearer {r.json()['data']}"},
            json={"muleVersion": "4.4.0", "gatewayVersion": "1.0", "muleLabel": name,
                  "signatureRequest": _csr()})
        assert reg.status_code < 500, reg.text
        self.expect(expected, reg, f"register {name!r}")
        if reg.status_code != 200:
            return None
        sid = self.new_id("target", int(reg.json()["serverId"]))
        if seen:
            self.backend.mark_seen(sid)
        self.model.registered(sid, env, name, seen)
        return sid

    # --- environments -------------------------------------------------------------------

    @rule(target=envs, name=st.sampled_from(["two", "three"]))
    def create_environment(self, name: str) -> Any:
        full = f"{name}-{self.tag}"
        expected = self.model.create_env(full)
        r = self.call("POST", f"/accounts/api/organizations/{self.org}/environments",
                      json={"name": full, "type": "sandbox"})
        self.expect(expected, r, "create an environment")
        if r.status_code != 201:
            return multiple()
        env = str(r.json()["id"])
        self.model.env_created(env, full)
        return env

    @rule(env=envs, actor=st.none() | users)
    def delete_environment(self, env: str, actor: User | None) -> None:
        expected = self.refused(actor, None, "admin") or self.model.delete_env(env)
        r = self.call("DELETE", f"/accounts/api/organizations/{self.org}/environments/{env}",
                      actor=actor)
        self.expect(expected, r, "delete an environment")

    # --- users and roles ----------------------------------------------------------------

    @rule(target=users, role=st.sampled_from(ROLES), env=st.none() | envs)
    def create_user(self, role: str, env: str | None) -> Any:
        envs = None if env is None else [env]
        expected = self.model.create_user(envs)
        username = f"u-{uuid.uuid4().hex[:10]}"
        r = self.call("POST", f"/accounts/api/organizations/{self.org}/users",
                      json={"username": username, "password": "model-user-password",
                            "role": role, "environments": envs})
        self.expect(expected, r, "create a user")
        if r.status_code != 201:
            return multiple()
        user = User(str(r.json()["id"]), username, role, envs)
        self._sign_in(user)
        self.model.user_created(user)
        return user

    def _sign_in(self, user: User) -> None:
        r = self.backend.http.request("POST", "/accounts/login", json={
            "username": user.username, "password": "model-user-password"})
        assert r.status_code == 200, r.text
        self.tokens[user.id] = r.json()["access_token"]

    @rule(user=users, role=st.none() | st.sampled_from(ROLES), enabled=st.none() | st.booleans(),
          actor=st.none() | users)
    def change_user(self, user: User, role: str | None, enabled: bool | None,
                    actor: User | None) -> None:
        expected = self.refused(actor, None, "admin") or Expect(200)
        body: dict[str, Any] = {}
        if role is not None:
            body["role"] = role
        if enabled is not None:
            body["enabled"] = enabled
        r = self.call("PATCH", f"/accounts/api/organizations/{self.org}/users/{user.id}",
                      actor=actor, json=body)
        self.expect(expected, r, "change a user")
        if r.status_code == 200:
            was_enabled = user.enabled
            self.model.change_user(user, role, enabled)
            if enabled and not was_enabled:
                self._sign_in(user)  # disabling ended its tokens; it signs in again

    # --- servers ------------------------------------------------------------------------

    @rule(target=servers, env=envs, name=NAMES, seen=st.booleans())
    def register_server(self, env: str, name: str, seen: bool) -> Any:
        sid = self._register(env, name, seen)
        return multiple() if sid is None else sid

    @rule(env=envs, server=servers, name=NAMES, actor=st.none() | users)
    def rename_server(self, env: str, server: int, name: str, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.rename_server(env, server, name)
        r = self.call("PATCH", f"{HYBRID}/servers/{server}", actor=actor, env=env,
                      json={"name": name})
        self.expect(expected, r, f"rename server {server}")

    @rule(env=envs, server=servers, actor=st.none() | users)
    def delete_server(self, env: str, server: int, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or self.model.delete_server(env, server)
        r = self.call("DELETE", f"{HYBRID}/servers/{server}", actor=actor, env=env)
        self.expect(expected, r, f"delete server {server}")

    # --- server groups ------------------------------------------------------------------

    @rule(target=groups, env=envs, name=NAMES,
          members=st.lists(servers | groups, max_size=3), actor=st.none() | users)
    def create_group(self, env: str, name: str, members: list[int], actor: User | None) -> Any:
        expected = self.refused(actor, env, "operator") or \
            self.model.create_group(env, name, members)
        r = self.call("POST", f"{HYBRID}/serverGroups", actor=actor, env=env,
                      json={"name": name, "serverIds": members})
        self.expect(expected, r, f"create group {name!r} of {members}")
        if r.status_code != 201:
            return multiple()
        gid = self.new_id("target", r.json()["data"]["id"])
        self.model.group_created(gid, env, name, list(dict.fromkeys(members)))
        return gid

    @rule(env=envs, group=groups, name=NAMES, actor=st.none() | users)
    def rename_group(self, env: str, group: int, name: str, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.rename_group(env, group, name)
        r = self.call("PATCH", f"{HYBRID}/serverGroups/{group}", actor=actor, env=env,
                      json={"name": name})
        self.expect(expected, r, f"rename group {group}")

    @rule(env=envs, group=groups, server=servers | clusters, actor=st.none() | users)
    def add_to_group(self, env: str, group: int, server: int, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.add_to_group(env, group, server)
        r = self.call("POST", f"{HYBRID}/serverGroups/{group}/servers/{server}",
                      actor=actor, env=env)
        self.expect(expected, r, f"add server {server} to group {group}")

    @rule(env=envs, group=groups, server=servers, actor=st.none() | users)
    def remove_from_group(self, env: str, group: int, server: int, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.remove_from_group(env, group, server)
        r = self.call("DELETE", f"{HYBRID}/serverGroups/{group}/servers/{server}",
                      actor=actor, env=env)
        self.expect(expected, r, f"remove server {server} from group {group}")
        if r.status_code == 204:
            self._take_copies(env)

    @rule(env=envs, group=groups, actor=st.none() | users)
    def delete_group(self, env: str, group: int, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or self.model.delete_group(env, group)
        r = self.call("DELETE", f"{HYBRID}/serverGroups/{group}", actor=actor, env=env)
        self.expect(expected, r, f"delete group {group}")
        if r.status_code == 204:
            self._take_copies(env)

    def _take_copies(self, env: str) -> None:
        """The copies a group left its servers: one per application and server, under a new
        id, with the group application's name, desired status and deployment."""
        for app, sid in self.model.copies:
            r = self.call("GET", f"{HYBRID}/applications", env=env,
                          params={"targetId": sid, "artifactName": app.name})
            assert r.status_code == 200, r.text
            [copy] = r.json()["data"]
            self.model.split_off(app, sid, self.new_id("application", copy["id"]))
        self.model.copies = []

    # --- clusters -----------------------------------------------------------------------

    @rule(target=clusters, env=envs, name=NAMES, multicast=st.booleans(),
          members=st.lists(st.tuples(servers | groups, st.booleans()), max_size=3),
          actor=st.none() | users)
    def create_cluster(self, env: str, name: str, multicast: bool,
                       members: list[tuple[int, bool]], actor: User | None) -> Any:
        listed = [(sid, self.model.next_ip() if with_ip else None) for sid, with_ip in members]
        expected = self.refused(actor, env, "operator") or \
            self.model.create_cluster(env, name, multicast, listed)
        r = self.call("POST", f"{HYBRID}/clusters", actor=actor, env=env,
                      json={"name": name, "multicastEnabled": multicast,
                            "servers": [{"serverId": s, "serverIp": ip} for s, ip in listed]})
        self.expect(expected, r, f"create cluster {name!r} of {listed}")
        if r.status_code != 201:
            return multiple()
        cid = self.new_id("target", r.json()["data"]["id"])
        self.model.cluster_created(cid, env, name, multicast, listed)
        return cid

    @rule(env=envs, cluster=clusters, name=NAMES, actor=st.none() | users)
    def rename_cluster(self, env: str, cluster: int, name: str, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.rename_cluster(env, cluster, name)
        r = self.call("PATCH", f"{HYBRID}/clusters/{cluster}", actor=actor, env=env,
                      json={"name": name})
        self.expect(expected, r, f"rename cluster {cluster}")

    @rule(env=envs, cluster=clusters, server=servers, with_ip=st.booleans(),
          actor=st.none() | users)
    def add_to_cluster(self, env: str, cluster: int, server: int, with_ip: bool,
                       actor: User | None) -> None:
        ip = self.model.next_ip() if with_ip else None
        expected = self.refused(actor, env, "operator") or \
            self.model.add_to_cluster(env, cluster, server, ip)
        r = self.call("POST", f"{HYBRID}/clusters/{cluster}/servers", actor=actor, env=env,
                      json={"serverId": server, "serverIp": ip})
        self.expect(expected, r, f"add server {server} to cluster {cluster}")

    @rule(env=envs, cluster=clusters, server=servers, actor=st.none() | users)
    def remove_from_cluster(self, env: str, cluster: int, server: int,
                            actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.remove_from_cluster(env, cluster, server)
        r = self.call("DELETE", f"{HYBRID}/clusters/{cluster}/servers/{server}",
                      actor=actor, env=env)
        self.expect(expected, r, f"remove server {server} from cluster {cluster}")

    @rule(env=envs, cluster=clusters, actor=st.none() | users)
    def delete_cluster(self, env: str, cluster: int, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.delete_cluster(env, cluster)
        r = self.call("DELETE", f"{HYBRID}/clusters/{cluster}", actor=actor, env=env)
        self.expect(expected, r, f"delete cluster {cluster}")

    # --- applications -------------------------------------------------------------------

    @rule(target=apps, env=envs, name=NAMES, target_id=servers | groups | clusters,
          artifact=st.sampled_from(ARTIFACTS), actor=st.none() | users)
    def deploy(self, env: str, name: str, target_id: int, artifact: str,
               actor: User | None) -> Any:
        expected = self.refused(actor, env, "operator") or \
            self.model.deploy(env, name, target_id)
        r = self.call("POST", f"{HYBRID}/applications", actor=actor, env=env,
                      data={"artifactName": name, "targetId": str(target_id)},
                      files={"file": (f"{artifact}.zip", ZIPS[artifact], "application/zip")})
        self.expect(expected, r, f"deploy {name!r} to {target_id}")
        if r.status_code != 202:
            return multiple()
        aid = self.new_id("application", r.json()["data"]["id"])
        self.model.deployed(aid, env, name, target_id, artifact)
        return aid

    @rule(target=apps, env=envs, name=NAMES, target_id=servers | groups | clusters,
          source=apps, actor=st.none() | users)
    def promote(self, env: str, name: str, target_id: int, source: int,
                actor: User | None) -> Any:
        """A deploy by reference to another application (MuleSoft's promote script)."""
        expected = self.refused(actor, env, "operator") or \
            self.model.promote(env, actor, name, target_id, source)
        r = self.call("POST", f"{HYBRID}/applications", actor=actor, env=env, json={
            "applicationSource": {"source": "HYBRID", "id": source}, "targetId": target_id,
            "artifactName": name})
        self.expect(expected, r, f"promote application {source} as {name!r} to {target_id}")
        if r.status_code != 202:
            return multiple()
        aid = self.new_id("application", r.json()["data"]["id"])
        self.model.deployed(aid, env, name, target_id, self.model.apps[source].artifact)
        return aid

    @rule(env=envs, app=apps, source=apps, actor=st.none() | users)
    def redeploy_from(self, env: str, app: int, source: int, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.redeploy_from(env, actor, app, source)
        r = self.call("PATCH", f"{HYBRID}/applications/{app}/artifact", actor=actor, env=env,
                      json={"applicationSource": {"source": "HYBRID", "id": source}})
        self.expect(expected, r, f"redeploy application {app} from application {source}")

    @rule(env=envs, app=apps, artifact=st.none() | st.sampled_from(ARTIFACTS),
          actor=st.none() | users)
    def redeploy(self, env: str, app: int, artifact: str | None, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.redeploy(env, app, artifact)
        kw: dict[str, Any] = {}
        if artifact is not None:
            kw["files"] = {"file": (f"{artifact}.zip", ZIPS[artifact], "application/zip")}
        r = self.call("PATCH", f"{HYBRID}/applications/{app}", actor=actor, env=env, **kw)
        self.expect(expected, r, f"redeploy application {app} with {artifact}")

    @rule(env=envs, app=apps, status=st.sampled_from(["STARTED", "STOPPED"]),
          actor=st.none() | users)
    def start_or_stop(self, env: str, app: int, status: str, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or \
            self.model.set_desired(env, app, status)
        r = self.call("PATCH", f"{HYBRID}/applications/{app}", actor=actor, env=env,
                      json={"desiredStatus": status})
        self.expect(expected, r, f"{status} application {app}")

    @rule(env=envs, app=apps, pick=st.integers(0, 4), actor=st.none() | users)
    def rollback(self, env: str, app: int, pick: int, actor: User | None) -> None:
        """To one of the deployments its history lists: the newest (the current one) or,
        where there is one, an earlier one, three times in five; or to an id it does not list.
        (An index drawn over the whole list almost never reached an earlier deployment: most
        histories hold one or two entries.)"""
        listed = self.call("GET", f"{HYBRID}/applications/{app}/deployments", env=env)
        entries = listed.json()["data"] if listed.status_code == 200 else []
        earlier = entries[1:]
        chosen = (None if not entries or pick == 4 else
                  earlier[pick % len(earlier)] if earlier and pick else entries[0])
        history_id = chosen["id"] if chosen else 2**31 - 1
        expected = self.refused(actor, env, "operator") or \
            self.model.rollback(env, app, chosen["deploymentId"] if chosen else None)
        r = self.call("POST", f"{HYBRID}/applications/{app}/rollback", actor=actor, env=env,
                      json={"deploymentId": history_id})
        self.expect(expected, r, f"roll application {app} back to {chosen}")

    @rule(env=envs, app=apps, actor=st.none() | users)
    def delete_application(self, env: str, app: int, actor: User | None) -> None:
        expected = self.refused(actor, env, "operator") or self.model.delete_app(env, app)
        r = self.call("DELETE", f"{HYBRID}/applications/{app}", actor=actor, env=env)
        self.expect(expected, r, f"delete application {app}")

    # --- faults -------------------------------------------------------------------------

    @precondition(lambda self: self.restarts < RESTARTS_PER_SEQUENCE)
    @rule()
    def restart(self) -> None:
        """The control plane stops and starts again on the same database: nothing is lost,
        and ids go on where they were."""
        self.restarts += 1
        self.backend.restart()

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def lists_agree_with_the_model(self) -> None:
        type(self).steps += 1
        self.checks += 1
        m = self.model
        for env in m.envs:
            self._check_environment(env)
        r = self.call("GET", f"/accounts/api/organizations/{self.org}/environments")
        listed = {e["id"]: e["name"] for e in r.json()["data"]}
        assert r.json()["total"] == len(listed) == len(m.envs) + m.other_envs
        assert {e: listed.get(e) for e in m.envs} == m.envs
        assert not set(listed) & m.gone_envs
        r = self.call("GET", f"/accounts/api/organizations/{self.org}/users")
        shown = {u["id"]: (u["role"], u["enabled"], u["environments"]) for u in r.json()["data"]}
        for user in m.users.values():
            assert shown[user.id] == (user.role, user.enabled, user.envs), user

    def teardown(self) -> None:
        for env in self.model.envs:
            self._check_environment(env, final=True)

    def _check_environment(self, env: str, final: bool = False) -> None:
        m = self.model
        servers, groups, clusters, apps = m.in_env(env)

        def listed(path: str) -> list[dict[str, Any]]:
            r = self.call("GET", f"{HYBRID}{path}", env=env)
            assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:500]}"
            body = r.json()
            assert body["total"] == len(body["data"]), path
            return list(body["data"])

        group_names = {g.id: g.name for g in groups}
        cluster_names = {c.id: c.name for c in clusters}
        got_servers = {s["id"]: (s["name"], s.get("serverGroupId"), s.get("serverGroupName"),
                                 s.get("clusterId"), s.get("clusterName"), s.get("serverIp"))
                       for s in listed("/servers")}
        assert got_servers == {s.id: (s.name, s.group, group_names.get(s.group or 0), s.cluster,
                                      cluster_names.get(s.cluster or 0),
                                      s.ip if s.cluster else None) for s in servers}
        got_groups = {g["id"]: (g["name"], [s["id"] for s in g["servers"]])
                      for g in listed("/serverGroups")}
        assert got_groups == {g.id: (g.name, m.members(g.id)) for g in groups}
        got_clusters = {c["id"]: (c["name"], c["multicastEnabled"],
                                  [s["id"] for s in c["servers"]])
                        for c in listed("/clusters")}
        assert got_clusters == {c.id: (c.name, c.multicast, m.members(c.id)) for c in clusters}
        members = [sid for g in got_groups.values() for sid in g[1]] + \
            [sid for c in got_clusters.values() for sid in c[2]]
        assert len(members) == len(set(members)), "a server is in two groups or clusters"

        got_apps = {a["id"]: a for a in listed("/applications")}
        assert set(got_apps) == {a.id for a in apps}
        for app in apps:
            shown = got_apps[app.id]
            assert (shown["name"], shown["target"]["id"], shown["desiredStatus"],
                    shown["lastReportedStatus"], shown["started"],
                    [i["serverId"] for i in shown["serverArtifacts"]],
                    shown["artifact"]["sha256"]) == \
                (app.name, app.target, m.desired_word(app), "UNDEPLOYED", False,
                 m.members(app.target), SHA256[app.artifact]), (app, shown)

        kinds = {s.id: "SERVER" for s in servers} | {g.id: "SERVER_GROUP" for g in groups} | \
            {c.id: "CLUSTER" for c in clusters}
        assert {t["id"]: t["type"] for t in listed("/targets")} == kinds

        r = self.call("GET", "/armui/api/v1/servers", env=env)
        assert r.status_code == 200, r.text
        console = {t["id"]: (t["type"], [s["id"] for s in t["details"]["servers"]],
                             sorted(d["id"] for d in t["deployments"]))
                   for t in r.json()["data"]}
        assert console == {tid: (kind, m.members(tid), [a.id for a in m.apps_on(tid)])
                           for tid, kind in kinds.items()
                           if kind != "SERVER" or (m.servers[tid].group is None
                                                   and m.servers[tid].cluster is None)}
        r = self.call("GET", "/armui/api/v1/applications", env=env)
        assert r.status_code == 200, r.text
        assert {a["id"]: a["target"]["id"] for a in r.json()["data"]} == \
            {a.id: a.target for a in apps}

        if self.checks % 5 and not final:
            return  # the objects one by one: every fifth step, and at the end
        # every listed object can be fetched
        for path, ids in (("/servers", got_servers), ("/serverGroups", got_groups),
                          ("/clusters", got_clusters), ("/applications", got_apps)):
            for oid in ids:
                r = self.call("GET", f"{HYBRID}{path}/{oid}", env=env)
                assert r.status_code == 200, f"{path}/{oid}: {r.status_code} {r.text[:300]}"
        # every deleted one is gone
        for tid, path in m.gone_targets.items():
            r = self.call("GET", f"{HYBRID}{path}/{tid}", env=env)
            assert r.status_code == 404, f"{path}/{tid} was deleted: {r.status_code}"
        for aid in m.gone_apps:
            r = self.call("GET", f"{HYBRID}/applications/{aid}", env=env)
            assert r.status_code == 404, f"application {aid} was deleted: {r.status_code}"


def _csr() -> str:
    from tests.support import make_csr

    return make_csr()


def bind(backend: Backend) -> type[CorralMachine]:
    """The machine, driving this backend."""
    return type("Machine", (CorralMachine,), {"backend": backend, "outcomes": Counter()})

