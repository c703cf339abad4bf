"""`corral audit`: who changed what, from where, and how it ended (the audit trail)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

import typer

from corral.cli.api_client import Api
from corral.cli.output import Column, Format, OutputOpt, fail, show_list
from corral.client import ApiError

PREFIXES = re.compile(r"/hybrid/api/v1(?=/)|/accounts/api/organizations/[^/ ]+(?=/)|"
                      r"/accounts/api(?=/)")
"""Said once in the table, not on every row: the route and the resource as the API names them
stay whole in `--output json`."""


def _short(path: str) -> str:
    return PREFIXES.sub("", path)


AUDIT_COLUMNS: list[Column] = [
    ("TIME", lambda e: dt.datetime.fromtimestamp(e["time"] / 1000).strftime(
        "%m-%d %H:%M:%S")),
    ("ACTOR", lambda e: e["actor"]["name"] or e["actor"]["kind"]),
    ("SOURCE", lambda e: e["source"]),
    ("WHAT", lambda e: e.get("description")
     or f"{e['action'].partition(' ')[0]} {_short(e['resource'])}"),
    ("OUTCOME", lambda e: f"{e['outcome']} ({e['status']})"),
]


def _millis(when: str | None, option: str) -> int | None:
    if when is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(when)
    except ValueError:
        fail(f"{option} {when!r} is not a date or time (e.g. 2026-11-27 or 2026-11-27T18:00)")
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


def audit(
    actor: Annotated[str | None, typer.Option(help="only this user's or app's changes")] = None,
    action: Annotated[str | None, typer.Option(
        help="actions containing this, e.g. 'DELETE' or '/applications'")] = None,
    resource: Annotated[str | None, typer.Option(
        help="resources starting with this path, e.g. /hybrid/api/v1/applications/12")] = None,
    env: Annotated[str | None, typer.Option(
        "--env", help="only this environment (name or id); default: every one you may read")
    ] = None,
    since: Annotated[str | None, typer.Option(help="from this time (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="before this time (ISO 8601)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    output: OutputOpt = Format.table,
) -> None:
    """Show the audit trail, newest first: admins see the whole organization, other users the
    environments they may use."""
    api = Api.from_config()
    params: dict[str, str | int] = {"limit": limit, "offset": offset}
    for key, value in (("actor", actor), ("action", action), ("resource", resource),
                       ("from", _millis(since, "--since")), ("to", _millis(until, "--until"))):
        if value is not None:
            params[key] = value
    if env is not None:
        try:
            params["environmentId"] = api.client.use_environment(env, api.profile.org_id).env_id
        except ApiError as exc:
            fail(exc.message)
    page = api.get_json(f"/accounts/api/organizations/{api.profile.org_id}/auditEvents",
                        params=params)
    show_list(output, page["data"], AUDIT_COLUMNS, "No audit events match.")
