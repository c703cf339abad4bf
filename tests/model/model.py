"""The reference model: what ARM's API promises, as plain Python.

This is the executable specification of how Corral's objects compose. Each method is one call
of the API: it says which status the call answers for the current state and, when the call is
accepted, what it changes. Nothing here knows how Corral stores anything; the state machine in
`test_stateful.py` makes the same call on the real control plane, then compares every list of
every API with this model (`docs/model.md` says what is covered and what is not yet).

Promises written down here (ARM's documentation, `docs/api.md`, ADR 0006):
- servers, groups and clusters share one id space; an application's id is its own; no id is
  ever given twice, whatever was deleted, and across restarts;
- a server is in at most one group or cluster, joins one only without applications of its own,
  and is deployed to only through its group or cluster (a server that never connected takes
  no deployment);
- leaving or deleting a group leaves each server its own copy of every group application
  (new ids, the same name, desired status and deployment); leaving or deleting a cluster
  removes its applications from the server;
- names are unique per kind and environment (servers, groups and clusters may share one);
  an application's name is unique on its target;
- viewers read; operators also change servers, groups, clusters and applications in the
  environments they hold; admins also users and environments; a disabled user's token stops;
  a call that is not allowed is refused and changes nothing;
- an environment that holds a server, group, cluster or application is not deleted, nor the
  organization's last one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

ROLES = ("viewer", "operator", "admin")


@dataclass
class Server:
    id: int
    env: str
    name: str
    seen: bool
    """Its agent connected once: it takes deployments (ADR 0006)."""
    group: int | None = None
    cluster: int | None = None
    ip: str | None = None


@dataclass
class Group:
    id: int
    env: str
    name: str


@dataclass
class Cluster:
    id: int
    env: str
    name: str
    multicast: bool


@dataclass
class App:
    id: int
    env: str
    name: str
    target: int
    artifact: str
    """Which file it runs (a label the test uploads under)."""
    desired: str = "STARTED"
    deployment: int = 1
    history: dict[int, str] = field(default_factory=dict)
    """Deployment number → artifact, for the deployments this application recorded (a copy
    left by a group keeps its number but has no history of its own)."""


@dataclass
class User:
    id: str
    username: str
    role: str
    envs: list[str] | None
    """The environments the role holds in; None: all."""
    enabled: bool = True


@dataclass
class Expect:
    """What a call must answer: one status (the model's promise), and, when it is accepted,
    what it changed."""

    status: int
    why: str = ""


OK = Expect(200)


class Model:
    def __init__(self, org: str) -> None:
        self.org = org
        self.envs: dict[str, str] = {}  # id → name
        self.other_envs = 0
        """Environments of the organization that this model did not create (they stay)."""
        self.servers: dict[int, Server] = {}
        self.groups: dict[int, Group] = {}
        self.clusters: dict[int, Cluster] = {}
        self.apps: dict[int, App] = {}
        self.users: dict[str, User] = {}
        self.gone_targets: dict[int, str] = {}
        """Deleted targets: id → the path they were read at (`/servers`, ...)."""
        self.gone_apps: set[int] = set()
        self.gone_envs: set[str] = set()
        self._ips = itertools.count(1)
        self.copies: list[tuple[App, int]] = []
        """Set by a call that leaves servers their own copies of group applications: which
        application each server now has a copy of (the API gives the copies' ids)."""

    # --- who may do what ----------------------------------------------------------------

    def refusal(self, actor: User | None, env: str | None, role: str) -> Expect | None:
        """Why `actor` (None: the bootstrap admin) may not make a call needing `role` in
        `env` (None: an organization-wide call), or None when it may."""
        if actor is not None and not actor.enabled:
            return Expect(401, "a disabled user's token stops at once")
        if env is not None and env not in self.envs:
            return Expect(403, "no such environment for this token")
        if actor is None:
            return None
        if env is not None and actor.envs is not None and env not in actor.envs:
            return Expect(403, "the user's role does not hold in this environment")
        if ROLES.index(actor.role) < ROLES.index(role):
            return Expect(403, f"the call needs the {role} role")
        return None

    # --- lookups ------------------------------------------------------------------------

    def target(self, target_id: int, env: str) -> Server | Group | Cluster | None:
        found = self.servers.get(target_id) or self.groups.get(target_id) \
            or self.clusters.get(target_id)
        return found if found is not None and found.env == env else None

    def members(self, target_id: int) -> list[int]:
        """The servers an application on this target runs on."""
        if target_id in self.servers:
            return [target_id]
        return sorted(s.id for s in self.servers.values()
                      if target_id in (s.group, s.cluster))

    def apps_on(self, target_id: int) -> list[App]:
        return sorted((a for a in self.apps.values() if a.target == target_id),
                      key=lambda a: a.id)

    def in_env(self, env: str) -> tuple[list[Server], list[Group], list[Cluster], list[App]]:
        return ([s for s in self.servers.values() if s.env == env],
                [g for g in self.groups.values() if g.env == env],
                [c for c in self.clusters.values() if c.env == env],
                [a for a in self.apps.values() if a.env == env])

    def _name_taken(self, kind: dict[int, Server] | dict[int, Group] | dict[int, Cluster],
                    env: str, name: str, but: int | None = None) -> bool:
        return any(o.env == env and o.name == name and o.id != but for o in kind.values())

    def _joinable(self, env: str, server_id: int) -> Expect | None:
        """Why this server may not join a group or cluster, or None."""
        target = self.target(server_id, env)
        if target is None:
            return Expect(404, "no such server here")
        if not isinstance(target, Server):
            return Expect(400, "groups and clusters are made of servers only")
        if target.group is not None or target.cluster is not None:
            return Expect(409, "a server is in at most one group or cluster")
        if self.apps_on(server_id):
            return Expect(409, "a server joins only without applications of its own")
        return None

    def next_ip(self) -> str:
        n = next(self._ips)
        return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"

    # --- environments -------------------------------------------------------------------

    def create_env(self, name: str) -> Expect:
        if name in self.envs.values():
            return Expect(409, "environment names are unique")
        return Expect(201)

    def env_created(self, env_id: str, name: str) -> None:
        self.envs[env_id] = name

    def delete_env(self, env: str) -> Expect:
        if env not in self.envs:
            return Expect(404)
        if any(self.in_env(env)):
            return Expect(409, "an environment that holds anything is not deleted")
        if len(self.envs) + self.other_envs <= 1:
            return Expect(409, "the organization's last environment stays")
        del self.envs[env]
        self.gone_envs.add(env)
        for user in self.users.values():
            if user.envs is not None and env in user.envs:
                user.envs.remove(env)
        return Expect(204)

    # --- users --------------------------------------------------------------------------

    def create_user(self, envs: list[str] | None) -> Expect:
        if envs is not None and any(e not in self.envs for e in envs):
            return Expect(400, "a user's environments are the organization's")
        return Expect(201)

    def user_created(self, user: User) -> None:
        self.users[user.id] = user

    def change_user(self, user: User, role: str | None, enabled: bool | None) -> Expect:
        if role is not None:
            user.role = role
        if enabled is not None:
            user.enabled = enabled
        return OK

    # --- servers ------------------------------------------------------------------------

    def register(self, env: str, name: str) -> Expect:
        if self._name_taken(self.servers, env, name):
            return Expect(409, "server names are unique in an environment")
        return OK

    def registered(self, server_id: int, env: str, name: str, seen: bool) -> None:
        self.servers[server_id] = Server(server_id, env, name, seen)

    def rename_server(self, env: str, server_id: int, name: str) -> Expect:
        server = self.target(server_id, env)
        if not isinstance(server, Server):
            return Expect(404)
        if self._name_taken(self.servers, env, name, but=server_id):
            return Expect(409)
        server.name = name
        return OK

    def delete_server(self, env: str, server_id: int) -> Expect:
        """Its own applications go; a group's or cluster's stay on the others."""
        server = self.target(server_id, env)
        if not isinstance(server, Server):
            return Expect(404)
        for app in self.apps_on(server_id):
            self._drop_app(app.id)
        del self.servers[server_id]
        self.gone_targets[server_id] = "/servers"
        return Expect(204)

    # --- server groups ------------------------------------------------------------------

    def create_group(self, env: str, name: str, server_ids: list[int]) -> Expect:
        if self._name_taken(self.groups, env, name):
            return Expect(409, "group names are unique in an environment")
        for sid in dict.fromkeys(server_ids):
            refused = self._joinable(env, sid)
            if refused:
                return refused
        return Expect(201)

    def group_created(self, group_id: int, env: str, name: str, server_ids: list[int]) -> None:
        self.groups[group_id] = Group(group_id, env, name)
        for sid in server_ids:
            self.servers[sid].group = group_id

    def rename_group(self, env: str, group_id: int, name: str) -> Expect:
        group = self.target(group_id, env)
        if not isinstance(group, Group):
            return Expect(404)
        if self._name_taken(self.groups, env, name, but=group_id):
            return Expect(409)
        group.name = name
        return OK

    def add_to_group(self, env: str, group_id: int, server_id: int) -> Expect:
        if not isinstance(self.target(group_id, env), Group):
            return Expect(404)
        refused = self._joinable(env, server_id)
        if refused:
            return refused
        self.servers[server_id].group = group_id
        return OK

    def remove_from_group(self, env: str, group_id: int, server_id: int) -> Expect:
        """The server keeps each group application as its own (new id)."""
        if not isinstance(self.target(group_id, env), Group):
            return Expect(404)
        server = self.servers.get(server_id)
        if server is None or server.group != group_id:
            return Expect(404)
        self.copies = [(app, server_id) for app in self.apps_on(group_id)]
        server.group = None
        return Expect(204)

    def delete_group(self, env: str, group_id: int) -> Expect:
        """Each member keeps its own copy of each group application; the group's go."""
        if not isinstance(self.target(group_id, env), Group):
            return Expect(404)
        self.copies = [(app, sid) for app in self.apps_on(group_id)
                       for sid in self.members(group_id)]
        for app in self.apps_on(group_id):
            self._drop_app(app.id)
        for server in self.servers.values():
            if server.group == group_id:
                server.group = None
        del self.groups[group_id]
        self.gone_targets[group_id] = "/serverGroups"
        return Expect(204)

    def split_off(self, app: App, server_id: int, new_id: int) -> None:
        """The copy a server keeps of a group application when it leaves the group."""
        self.apps[new_id] = App(new_id, app.env, app.name, server_id, app.artifact,
                                app.desired, app.deployment)

    # --- clusters -----------------------------------------------------------------------

    def create_cluster(self, env: str, name: str, multicast: bool,
                       members: list[tuple[int, str | None]]) -> Expect:
        if not members:
            return Expect(400, "a cluster has at least one server")
        if self._name_taken(self.clusters, env, name):
            return Expect(409, "cluster names are unique in an environment")
        seen: set[int] = set()
        for sid, ip in members:
            if ip is None and not multicast:
                return Expect(400, "a unicast cluster needs every member's address")
            refused = self._joinable(env, sid)
            if refused:
                return refused
            if sid in seen:
                return Expect(400, "a server is listed twice")
            seen.add(sid)
        return Expect(201)

    def cluster_created(self, cluster_id: int, env: str, name: str, multicast: bool,
                        members: list[tuple[int, str | None]]) -> None:
        self.clusters[cluster_id] = Cluster(cluster_id, env, name, multicast)
        for sid, ip in members:
            self.servers[sid].cluster = cluster_id
            self.servers[sid].ip = ip

    def rename_cluster(self, env: str, cluster_id: int, name: str) -> Expect:
        cluster = self.target(cluster_id, env)
        if not isinstance(cluster, Cluster):
            return Expect(404)
        if self._name_taken(self.clusters, env, name, but=cluster_id):
            return Expect(409)
        cluster.name = name
        return OK

    def add_to_cluster(self, env: str, cluster_id: int, server_id: int, ip: str | None) -> Expect:
        cluster = self.target(cluster_id, env)
        if not isinstance(cluster, Cluster):
            return Expect(404)
        if ip is None and not cluster.multicast:
            return Expect(400, "a unicast cluster needs the member's address")
        refused = self._joinable(env, server_id)
        if refused:
            return refused
        self.servers[server_id].cluster = cluster_id
        self.servers[server_id].ip = ip
        return OK

    def remove_from_cluster(self, env: str, cluster_id: int, server_id: int) -> Expect:
        if not isinstance(self.target(cluster_id, env), Cluster):
            return Expect(404)
        server = self.servers.get(server_id)
        if server is None or server.cluster != cluster_id:
            return Expect(404)
        server.cluster, server.ip = None, None
        return Expect(204)

    def delete_cluster(self, env: str, cluster_id: int) -> Expect:
        """Its applications are removed from its servers."""
        if not isinstance(self.target(cluster_id, env), Cluster):
            return Expect(404)
        for app in self.apps_on(cluster_id):
            self._drop_app(app.id)
        for server in self.servers.values():
            if server.cluster == cluster_id:
                server.cluster, server.ip = None, None
        del self.clusters[cluster_id]
        self.gone_targets[cluster_id] = "/clusters"
        return Expect(204)

    # --- applications -------------------------------------------------------------------

    def deploy(self, env: str, name: str, target_id: int) -> Expect:
        target = self.target(target_id, env)
        if target is None:
            return Expect(404, "no such target here")
        if isinstance(target, Server):
            if not target.seen:
                return Expect(409, "a server that never connected takes no deployment")
            if target.group is not None or target.cluster is not None:
                return Expect(409, "a member is deployed to through its group or cluster")
        if any(a.name == name for a in self.apps_on(target_id)):
            return Expect(409, "application names are unique on a target")
        return Expect(202)

    def readable_source(self, actor: User | None, source_id: int) -> App | None:
        """The application whose artifact a promotion names: of any environment the caller
        may use (an unreadable one is as unknown as a missing one)."""
        source = self.apps.get(source_id)
        if source is None or (actor is not None and actor.envs is not None \
                and source.env not in actor.envs):
            return None
        return source

    def promote(self, env: str, actor: User | None, name: str, target_id: int,
                source_id: int) -> Expect:
        """A deploy by reference: the deploy's own refusals first, then the source's."""
        expected = self.deploy(env, name, target_id)
        if expected.status != 202:
            return expected
        if self.readable_source(actor, source_id) is None:
            return Expect(404, "no such application to take the artifact from")
        return expected

    def redeploy_from(self, env: str, actor: User | None, app_id: int,
                      source_id: int) -> Expect:
        """A redeploy with another application's artifact."""
        app = self.app(env, app_id)
        if app is None:
            return Expect(404)
        source = self.readable_source(actor, source_id)
        if source is None:
            return Expect(404, "no such application to take the artifact from")
        self._next_deployment(app, source.artifact)
        return OK

    def deployed(self, app_id: int, env: str, name: str, target_id: int, artifact: str) -> None:
        self.apps[app_id] = App(app_id, env, name, target_id, artifact, history={1: artifact})

    def app(self, env: str, app_id: int) -> App | None:
        found = self.apps.get(app_id)
        return found if found is not None and found.env == env else None

    def redeploy(self, env: str, app_id: int, artifact: str | None) -> Expect:
        """A new deployment number (after the highest ever recorded), the file given or the
        same one again."""
        app = self.app(env, app_id)
        if app is None:
            return Expect(404)
        self._next_deployment(app, artifact or app.artifact)
        return OK

    def _next_deployment(self, app: App, artifact: str) -> None:
        app.deployment = max(app.deployment, *app.history) + 1 if app.history \
            else app.deployment + 1
        app.artifact = artifact
        app.history[app.deployment] = artifact

    def set_desired(self, env: str, app_id: int, status: str) -> Expect:
        app = self.app(env, app_id)
        if app is None:
            return Expect(404)
        app.desired = status
        return OK

    def rollback(self, env: str, app_id: int, number: int | None) -> Expect:
        """To an earlier recorded deployment, by its history entry (`number`: the deployment
        it recorded; None: a history entry that does not exist)."""
        app = self.app(env, app_id)
        if app is None or number is None or number not in app.history:
            return Expect(404)
        if number == app.deployment:
            return Expect(409, "the current deployment is not rolled back to")
        self._next_deployment(app, app.history[number])
        return OK

    def delete_app(self, env: str, app_id: int) -> Expect:
        """204 whether it existed or not (ARM's clients poll until 404)."""
        if self.app(env, app_id) is not None:
            self._drop_app(app_id)
        return Expect(204)

    def _drop_app(self, app_id: int) -> None:
        del self.apps[app_id]
        self.gone_apps.add(app_id)

    # --- what the API must show ---------------------------------------------------------

    def desired_word(self, app: App) -> str:
        """`desiredStatus` with no agent connected: nothing reports, so a redeploy with
        instances to reach stays UPDATED (ADR 0006)."""
        if app.desired == "STOPPED":
            return "STOPPED"
        return "UPDATED" if app.deployment > 1 and self.members(app.target) else "STARTED"
