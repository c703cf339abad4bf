"""Small Jinja filters: relative times, status colours."""

from __future__ import annotations

import datetime as dt

from jinja2 import Environment

GOOD = {"RUNNING", "STARTED", "SUCCEEDED", "success"}
BAD = {"DISCONNECTED", "DEPLOYMENT_FAILED", "FAILED", "failure"}
BUSY = {"DEPLOYING", "STARTING", "STOPPING", "PARTIALLY_STARTED", "PARTIALLY_RUNNING", "UPDATED",
        "IN_PROGRESS", "WAITING"}


def ago(ms: int | None) -> str:
    if not ms:
        return "never"
    seconds = int(dt.datetime.now(dt.UTC).timestamp() - ms / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"


def date(ms: int | None) -> str:
    if not ms:
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def status_class(value: str | None) -> str:
    if value in GOOD:
        return "ok"
    if value in BAD:
        return "bad"
    if value in BUSY:
        return "busy"
    return "idle"


def install(env: Environment) -> None:
    env.filters["ago"] = ago
    env.filters["status_class"] = status_class
    env.filters["date"] = date
