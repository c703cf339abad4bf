"""Looking up targets (servers, groups, clusters) inside one org + environment."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, with_polymorphic

from corral.db.chunks import chunked
from corral.db.models import Application, Cluster, Server, ServerGroup, Target
from corral.domain.identity import Scope
from corral.domain.names import as_id
from corral.errors import Conflict, InvalidInput, NotFound

T = TypeVar("T", bound=Target)

KIND_NAMES = {Server: "server", ServerGroup: "server group", Cluster: "cluster"}



def get_target(session: Session, scope: Scope, target_id: int, kind: type[T], *,
               lock: bool = False) -> T:
    """The target of that kind in this environment; 404 for anything else, anywhere else.
    With `lock`, its row stays locked until the transaction ends: changes of one target take
    turns on PostgreSQL (SQLite has one writer anyway)."""
    tid = as_id(target_id)
    if tid is not None and lock:
        lock_rows(session, kind, [tid])
    target = session.get(kind, tid, populate_existing=lock) if tid is not None else None
    if target is None or target.environment_id != scope.environment_id:
        raise NotFound(f"{KIND_NAMES.get(kind, 'target')} {target_id} not found")
    return target


def lock_rows(session: Session, kind: type[Any], ids: list[int]) -> None:
    """Lock these rows (in id order, so that two transactions never wait on each other in a
    circle) until the transaction ends; the key stays shareable, so rows that refer to them can
    still be written. Reads after this see what the transactions before it committed."""
    session.execute(select(kind.id).where(kind.id.in_(ids)).order_by(kind.id)
                    .with_for_update(key_share=True))


def lock_members(session: Session, target: ServerGroup | Cluster) -> None:
    """Lock the servers of a group or cluster before any of their instances is touched: the
    gateway records an agent's report on its server's row first, then on its instances, and a
    change that took the other order could wait on it in a circle (a deadlock, seen as a 409)."""
    column = Server.server_group_id if isinstance(target, ServerGroup) else Server.cluster_id
    lock_rows(session, Server, list(session.scalars(select(Server.id).where(column == target.id))))


def list_targets(session: Session, scope: Scope, kind: type[T]) -> list[T]:
    return list(
        session.scalars(
            select(kind).where(kind.environment_id == scope.environment_id).order_by(kind.id)
        )
    )


def every_target(session: Session, scope: Scope, *, members: bool = True) -> list[Target]:
    """Servers, then groups, then clusters, each by id. Without `members`, the servers of a
    group or cluster are left to it (as ARM's console lists them)."""
    servers = select(Server).where(Server.environment_id == scope.environment_id)
    if not members:
        servers = servers.where(Server.server_group_id.is_(None), Server.cluster_id.is_(None))
    found: list[Target] = list(session.scalars(servers.order_by(Server.id)))
    return found + list_targets(session, scope, ServerGroup) + list_targets(session, scope, Cluster)


def check_name_free(session: Session, scope: Scope, kind: type[Target], name: str) -> None:
    taken = session.scalar(
        select(kind.id).where(kind.environment_id == scope.environment_id, kind.name == name)
    )
    if taken is not None:
        raise Conflict(f"a {KIND_NAMES[kind]} named {name!r} already exists in this environment")


def joinable_server(session: Session, scope: Scope, server_id: object) -> Server:
    """A server that may join a group or cluster: individual, free, without its own apps."""
    return joinable_servers(session, scope, [server_id])[0]


def joinable_servers(session: Session, scope: Scope, server_ids: list[object]) -> list[Server]:
    """`joinable_server` for many at once, in input order without repeats: three queries per
    2,000 ids however many (a group of ten thousand is formed in one request). The first id
    that may not join is refused, as it would be alone."""
    ids: list[int] = []
    for server_id in server_ids:
        try:
            ids.append(int(server_id))  # type: ignore[call-overload]
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"serverId {server_id!r} is not an integer id") from exc
    ids = list(dict.fromkeys(ids))
    wanted = [sid for sid in ids if as_id(sid) is not None]
    found: dict[int, Target] = {}
    own: dict[int, list[str]] = {}
    for chunk in chunked(wanted):
        lock_rows(session, Server, chunk)  # two joins of one server take turns
        any_target = with_polymorphic(Target, [Server])  # a server's own columns at once
        found.update((t.id, t) for t in session.scalars(
            select(any_target).where(any_target.id.in_(chunk))
            .execution_options(populate_existing=True)))
        for target_id, name in session.execute(
                select(Application.target_id, Application.name)
                .where(Application.target_id.in_(chunk)).order_by(Application.name)):
            own.setdefault(target_id, []).append(name)
    for sid in ids:
        _check_joinable(sid, found.get(sid), own.get(sid, []), scope)
    return [found[sid] for sid in ids]  # type: ignore[misc]


def _check_joinable(sid: int, target: Target | None, own_apps: list[str], scope: Scope) -> None:
    if target is None or target.environment_id != scope.environment_id:
        raise NotFound(f"server {sid} not found")
    if not isinstance(target, Server):
        raise InvalidInput(
            f"target {sid} is a {KIND_NAMES[type(target)]}; groups and clusters are made of "
            "individual servers only"
        )
    if target.server_group_id is not None:
        raise Conflict(f"server {sid} already belongs to server group {target.server_group_id}")
    if target.cluster_id is not None:
        raise Conflict(f"server {sid} already belongs to cluster {target.cluster_id}")
    if own_apps:
        raise Conflict(
            f"server {sid} has applications of its own ({', '.join(own_apps)}); delete them "
            "before adding it to a group or cluster"
        )


def check_size(current: int, adding: int, limit: int | None, what: str) -> None:
    if limit is not None and current + adding > limit:
        raise Conflict(f"a {what} may hold at most {limit} servers")


def applications_on(session: Session, target_id: int) -> list[Application]:
    return list(
        session.scalars(
            select(Application).where(Application.target_id == target_id).order_by(Application.id)
        )
    )
