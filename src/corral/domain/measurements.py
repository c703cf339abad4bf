"""The fleet's measurements: stored as they arrive (one row per server and per instance), folded
into one-minute means after `raw_seconds`, dropped after `retention_seconds`, and read back as
series with a step. Every query is by server or application and time, on one index, so the
table's size bounds the cost of neither writes nor reads."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from corral import wire
from corral.db.chunks import chunked
from corral.db.models import Application, MetricPoint, Server
from corral.errors import InvalidInput

DOWNSAMPLED_STEP = 60
MAX_POINTS = 1500
"""A series' points at most: a larger range gets a larger step."""

Sample = tuple[int, int, wire.Measurements]
"""(server id, arrival time in ms, what the agent measured)"""


def _application_ids(session: Session, server_ids: Sequence[int]) -> dict[tuple[int, str], int]:
    """(server, application name) → application id, for the applications reaching them."""
    found: dict[tuple[int, str], int] = {}
    for some in chunked(server_ids):
        rows = session.execute(
            select(Server.id, Application.name, Application.id)
            .join(Application, or_(Application.target_id == Server.id,
                                   Application.target_id == Server.server_group_id,
                                   Application.target_id == Server.cluster_id))
            .where(Server.id.in_(some)))
        found.update({(sid, name): app_id for sid, name, app_id in rows})
    return found


COLUMNS = ("server_id", "application_id", "at", "step", "cpu", "memory", "memory_total",
           "disk_used", "disk_total", "load_average", "threads", "fds", "restarts", "uptime",
           "messages", "errors", "response_time_ms")


def forget(session: Session, *, servers: Iterable[int] = (),
           applications: Iterable[int] = ()) -> None:
    """Points go with what they measured: a deleted server's (its own and its instances'), a
    deleted application's. No one reads a deleted object's figures under its id."""
    server_ids, app_ids = sorted(set(servers)), sorted(set(applications))
    if server_ids:
        session.execute(delete(MetricPoint).where(MetricPoint.server_id.in_(server_ids)))
    if app_ids:
        session.execute(delete(MetricPoint).where(MetricPoint.application_id.in_(app_ids)))


def forget_instances(session: Session, application_id: int, keep: Select[Any]) -> None:
    """An application's points on the servers it left (`keep`: the ids of those it still
    reaches)."""
    session.execute(delete(MetricPoint).where(MetricPoint.application_id == application_id,
                                              MetricPoint.server_id.not_in(keep)))


def move(session: Session, application_id: int, server_id: int, to_application: int) -> None:
    """A server leaving a group keeps its instance as an application of its own: the
    instance's points carry on under the new application."""
    session.execute(update(MetricPoint).where(
        MetricPoint.application_id == application_id, MetricPoint.server_id == server_id)
        .values(application_id=to_application))


def record(session: Session, samples: list[Sample]) -> int:
    """Store a burst of samples straight through the driver, `COPY` on PostgreSQL and
    `executemany` on SQLite (thousands of rows a second: building each row's parameters
    through the ORM cost more than the rest of a measurement's way in). An instance of an
    application the server no longer runs (or never ran) is dropped. Returns the rows
    written."""
    if not samples:
        return 0
    apps = _application_ids(session, sorted({sid for sid, _, _ in samples}))
    rows: list[tuple[Any, ...]] = []
    for server_id, at, m in samples:
        s = m.server
        rows.append((server_id, None, at, 0, s.cpu, s.memoryUsed, s.memoryTotal, s.diskUsed,
                     s.diskTotal, s.loadAverage, s.threads, None, None, None, None, None, None))
        for i in m.applications:
            app_id = apps.get((server_id, i.name))
            if app_id is not None:
                rows.append((server_id, app_id, at, 0, i.cpu, i.rss, None, None, None, None,
                             i.threads, i.fds, i.restarts, i.uptime, i.messages, i.errors,
                             i.responseTimeMs))
    connection = session.connection()
    columns = ", ".join(COLUMNS)
    if connection.dialect.name == "postgresql":  # COPY: one stream for the whole burst
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY metric_points ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:  # SQLite's executemany is a loop in C
        connection.exec_driver_sql(
            f"INSERT INTO metric_points ({columns}) VALUES ({', '.join('?' * len(COLUMNS))})",
            rows)
    return len(rows)


def _bucket(step_ms: int) -> ColumnElement[int]:
    return (MetricPoint.at // literal(step_ms)) * literal(step_ms)


def _int_mean(column: Any) -> Any:
    return cast(func.avg(column), BigInteger)


def downsample(session: Session, raw_seconds: int, retention_seconds: int,
               now_ms: int | None = None) -> tuple[int, int]:
    """Fold raw points older than `raw_seconds` into one-minute rows (means; counts summed;
    restarts and uptime their largest), then drop everything older than
    `retention_seconds`. Returns (raw points folded, points dropped)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    step_ms = DOWNSAMPLED_STEP * 1000
    cutoff = (now - raw_seconds * 1000) // step_ms * step_ms  # whole minutes only
    old = (MetricPoint.step == 0, MetricPoint.at < cutoff)
    bucket = _bucket(step_ms)
    folded = select(
        MetricPoint.server_id, MetricPoint.application_id, bucket, literal(DOWNSAMPLED_STEP),
        func.avg(MetricPoint.cpu), _int_mean(MetricPoint.memory),
        func.max(MetricPoint.memory_total), _int_mean(MetricPoint.disk_used),
        func.max(MetricPoint.disk_total), func.avg(MetricPoint.load_average),
        cast(func.avg(MetricPoint.threads), Integer), cast(func.avg(MetricPoint.fds), Integer),
        func.max(MetricPoint.restarts), func.max(MetricPoint.uptime),
        func.sum(MetricPoint.messages), func.sum(MetricPoint.errors),
        func.avg(MetricPoint.response_time_ms),
    ).where(*old).group_by(MetricPoint.server_id, MetricPoint.application_id, bucket)
    session.execute(insert(MetricPoint).from_select(list(COLUMNS), folded))
    raw = session.execute(delete(MetricPoint).where(*old))
    dropped = session.execute(delete(MetricPoint).where(
        MetricPoint.at < now - retention_seconds * 1000))
    return int(getattr(raw, "rowcount", 0) or 0), int(getattr(dropped, "rowcount", 0) or 0)


# --- series ---------------------------------------------------------------------------------

SERVER_SERIES = {
    "cpu": func.avg(MetricPoint.cpu), "memoryUsed": _int_mean(MetricPoint.memory),
    "memoryTotal": func.max(MetricPoint.memory_total),
    "diskUsed": _int_mean(MetricPoint.disk_used), "diskTotal": func.max(MetricPoint.disk_total),
    "loadAverage": func.avg(MetricPoint.load_average),
    "threads": cast(func.avg(MetricPoint.threads), Integer),
}
INSTANCE_SERIES = {
    "cpu": func.avg(MetricPoint.cpu), "memory": _int_mean(MetricPoint.memory),
    "threads": cast(func.avg(MetricPoint.threads), Integer),
    "fds": cast(func.avg(MetricPoint.fds), Integer), "restarts": func.max(MetricPoint.restarts),
    "uptime": func.max(MetricPoint.uptime), "messages": func.sum(MetricPoint.messages),
    "errors": func.sum(MetricPoint.errors),
    "responseTimeMs": func.avg(MetricPoint.response_time_ms),
}
SUMMED = frozenset({"cpu", "memory", "threads", "fds", "restarts", "messages", "errors"})
"""An application's instances add up; its response time and uptime do not."""


def window(frm: int | None, to: int | None, step: int | None,
           interval: float) -> tuple[int, int, int]:
    """(from ms, to ms, step s) of a series request: the last hour by default, a step that
    keeps the series under `MAX_POINTS`."""
    end = int(time.time() * 1000) if to is None else to
    start = end - 3600 * 1000 if frm is None else frm
    if start >= end:
        raise InvalidInput("from must be before to")
    if step is not None and step < 1:
        raise InvalidInput("step is a whole number of seconds, at least 1")
    least = max(1, math.ceil((end - start) / 1000 / MAX_POINTS))
    chosen = step if step is not None else max(least, math.ceil(interval or 15))
    return start, end, max(chosen, least)


def _rounded(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, float):
        return round(value, 3)
    return int(value)


def server_series(session: Session, server_id: int, frm: int, to: int,
                  step: int) -> dict[str, Any]:
    bucket = _bucket(step * 1000)
    rows = session.execute(
        select(bucket, *SERVER_SERIES.values())
        .where(MetricPoint.server_id == server_id, MetricPoint.application_id.is_(None),
               MetricPoint.at >= frm, MetricPoint.at < to)
        .group_by(bucket).order_by(bucket)).all()
    return {"serverId": server_id, "from": frm, "to": to, "step": step,
            "timestamps": [int(r[0]) for r in rows],
            "series": {name: [_rounded(r[i + 1]) for r in rows]
                       for i, name in enumerate(SERVER_SERIES)}}


def application_series(session: Session, application_id: int, frm: int, to: int, step: int,
                       server_id: int | None = None) -> dict[str, Any]:
    """The application's instances over its servers, per step: CPU, memory, threads, open
    files, restarts and pushed counts summed; uptime the longest; response time the mean."""
    bucket = _bucket(step * 1000)
    query = (select(bucket, MetricPoint.server_id, *INSTANCE_SERIES.values())
             .where(MetricPoint.application_id == application_id,
                    MetricPoint.at >= frm, MetricPoint.at < to)
             .group_by(bucket, MetricPoint.server_id).order_by(bucket))
    if server_id is not None:
        query = query.where(MetricPoint.server_id == server_id)
    merged: dict[int, dict[str, list[Any]]] = {}
    for row in session.execute(query):
        values = merged.setdefault(int(row[0]), {name: [] for name in INSTANCE_SERIES})
        for i, name in enumerate(INSTANCE_SERIES):
            if row[i + 2] is not None:
                values[name].append(row[i + 2])
    stamps = sorted(merged)

    def combine(name: str, values: list[Any]) -> float | int | None:
        if not values:
            return None
        if name in SUMMED:
            return _rounded(sum(values))
        if name == "uptime":
            return _rounded(max(values))
        return _rounded(sum(values) / len(values))

    return {"applicationId": application_id, "serverId": server_id, "from": frm, "to": to,
            "step": step, "timestamps": stamps,
            "series": {name: [combine(name, merged[t][name]) for t in stamps]
                       for name in INSTANCE_SERIES}}


# --- what alerts and the overview read ------------------------------------------------------

def latest_servers(session: Session, since_ms: int,
                   server_ids: Iterable[int] | None = None) -> dict[int, dict[str, float]]:
    """Each server's means since `since_ms` (its most recent readings), and the oldest
    reading's time (`oldest`): whether the readings cover an alert's whole period."""
    query = (select(MetricPoint.server_id, func.avg(MetricPoint.cpu),
                    func.min(MetricPoint.cpu), func.max(MetricPoint.cpu),
                    func.avg(100.0 * MetricPoint.memory / func.nullif(MetricPoint.memory_total, 0)),
                    func.min(100.0 * MetricPoint.memory / func.nullif(MetricPoint.memory_total, 0)),
                    func.max(100.0 * MetricPoint.memory / func.nullif(MetricPoint.memory_total, 0)),
                    func.avg(MetricPoint.load_average), func.min(MetricPoint.load_average),
                    func.max(MetricPoint.load_average), func.avg(MetricPoint.threads),
                    func.min(MetricPoint.threads), func.max(MetricPoint.threads),
                    func.min(MetricPoint.at))
             .where(MetricPoint.application_id.is_(None), MetricPoint.step == 0,
                    MetricPoint.at >= since_ms)
             .group_by(MetricPoint.server_id))
    if server_ids is not None:
        query = query.where(MetricPoint.server_id.in_(list(server_ids)))
    found = {}
    for r in session.execute(query):
        found[int(r[0])] = {
            "cpu": r[1], "cpu_min": r[2], "cpu_max": r[3], "memory": r[4], "memory_min": r[5],
            "memory_max": r[6], "load": r[7], "load_min": r[8], "load_max": r[9],
            "threads": r[10], "threads_min": r[11], "threads_max": r[12], "oldest": r[13]}
    return found


def latest_instances(session: Session, since_ms: int,
                     application_ids: Iterable[int]) -> dict[int, dict[str, float]]:
    """Each application's instance readings since `since_ms`: CPU (% of one core) and memory
    (MB) as mean, least and most over every instance, and the oldest reading's time."""
    mb = MetricPoint.memory / 1048576.0
    rows = session.execute(
        select(MetricPoint.application_id, func.avg(MetricPoint.cpu), func.min(MetricPoint.cpu),
               func.max(MetricPoint.cpu), func.avg(mb), func.min(mb), func.max(mb),
               func.min(MetricPoint.at))
        .where(MetricPoint.application_id.in_(list(application_ids)), MetricPoint.step == 0,
               MetricPoint.at >= since_ms)
        .group_by(MetricPoint.application_id))
    return {int(r[0]): {"cpu": r[1], "cpu_min": r[2], "cpu_max": r[3], "memory": r[4],
                        "memory_min": r[5], "memory_max": r[6], "oldest": r[7]} for r in rows}


def pushed_totals(session: Session, since_ms: int) -> dict[int, dict[str, Any]]:
    """Per application, what its instances pushed since `since_ms`: messages and errors
    summed, the mean response time, and the oldest reading's time. Applications that never
    pushed are absent."""
    rows = session.execute(
        select(MetricPoint.application_id, func.sum(MetricPoint.messages),
               func.sum(MetricPoint.errors), func.avg(MetricPoint.response_time_ms),
               func.min(MetricPoint.at))
        .where(MetricPoint.application_id.is_not(None), MetricPoint.step == 0,
               MetricPoint.at >= since_ms, MetricPoint.messages.is_not(None))
        .group_by(MetricPoint.application_id))
    return {int(r[0]): {"messages": r[1], "errors": r[2], "responseTimeMs": r[3],
                        "oldest": r[4]} for r in rows}


def latest_by_instance(session: Session, since_ms: int) -> dict[str, list[Any]]:
    """The latest reading of every server and instance since `since_ms`, labelled by name
    (for `GET /metrics` with `CORRAL_METRICS_PER_INSTANCE`)."""
    newest = (select(MetricPoint.server_id, MetricPoint.application_id,
                     func.max(MetricPoint.id).label("id"))
              .where(MetricPoint.at >= since_ms, MetricPoint.step == 0)
              .group_by(MetricPoint.server_id, MetricPoint.application_id).subquery())
    rows = session.execute(
        select(Server.name, Application.name, MetricPoint.cpu, MetricPoint.memory)
        .join(newest, newest.c.id == MetricPoint.id)
        .join(Server, Server.id == MetricPoint.server_id)
        .outerjoin(Application, Application.id == MetricPoint.application_id)).all()
    found: dict[str, list[Any]] = {"server_cpu_percent": [], "server_memory_bytes": [],
                                   "instance_cpu_percent": [], "instance_memory_bytes": []}
    for server, app, cpu, memory in rows:
        kind, key = ("server", (server,)) if app is None else ("instance", (app, server))
        found[f"{kind}_cpu_percent"].append((key, cpu))
        found[f"{kind}_memory_bytes"].append((key, memory))
    return found


def busiest_servers(session: Session, server_ids: Iterable[int], since_ms: int,
                    limit: int = 5) -> list[tuple[int, float, float | None]]:
    """(server id, CPU %, memory %) of the servers with the highest recent CPU."""
    latest = latest_servers(session, since_ms, server_ids)
    ranked = sorted(latest.items(), key=lambda kv: -(kv[1]["cpu"] or 0))[:limit]
    return [(sid, float(v["cpu"] or 0), None if v["memory"] is None else float(v["memory"]))
            for sid, v in ranked]
