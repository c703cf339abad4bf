"""Answers kept between changes (`corral.api.answers`): every list and object served from what
was already rendered shows a change on the very next call, whichever path wrote it; a kept
answer is served only to callers of its environment whose token still holds; `ETag` and
`If-None-Match` answer 304 while nothing changed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from corral import metrics
from corral.api.answers import KEPT, Answer, Answers
from corral.controlplane import ControlPlane
from corral.db.changes import ChangeCounter
from corral.db.models import Server
from corral.db.session import transaction
from corral.domain.identity import Scope
from tests.api.conftest import Api


@pytest.fixture
def heard(plane: ControlPlane) -> None:
    """One in-process control plane and no other replica: nothing goes unheard (on
    PostgreSQL a served replica says so once its gateway listens)."""
    plane.changes.heard = True


def _kept() -> float:
    return metrics.REGISTRY.get_sample_value("corral_answers_total", {"outcome": "kept"}) or 0


def _fleet(api: Api) -> dict[str, int]:
    alone, grouped, clustered = api.register("alone"), api.register("g1"), api.register("c1")
    gid = api.post("/serverGroups", json={"name": "G", "serverIds": [grouped]}).json()["data"]["id"]
    cid = api.post("/clusters", json={"name": "C", "servers": [
        {"serverId": clustered, "serverIp": "10.0.0.3"}]}).json()["data"]["id"]
    app = api.deploy("solo", gid).json()["data"]["id"]
    return {"server": alone, "group": gid, "cluster": cid, "app": app}


Body = dict[str, Any]
Shows = Callable[[Body], bool]
Change = Callable[[Api, ControlPlane, dict[str, int], str], Shows]
"""Changes something under an answer (`tag`: a name not used before); what then shows."""


def _items(body: Body) -> list[dict[str, Any]]:
    data = body["data"]
    return data if isinstance(data, list) else [data]


def _rename(kind: str) -> Change:
    def change(api: Api, _plane: ControlPlane, ids: dict[str, int], tag: str) -> Shows:
        _ok(api.patch(f"/{kind}/{ids[_ID[kind]]}", json={"name": tag}))
        return lambda body: tag in {item["name"] for item in _items(body)}
    return change


def _start_or_stop(api: Api, _plane: ControlPlane, ids: dict[str, int], _tag: str) -> Shows:
    ids["stopped"] = 1 - ids.get("stopped", 0)
    wanted = "STOPPED" if ids["stopped"] else "STARTED"
    _ok(api.patch(f"/applications/{ids['app']}", json={"desiredStatus": wanted}))
    return lambda body: {item["desiredStatus"] for item in _items(body)} == {wanted}


def _reported_by_agent(_api: Api, plane: ControlPlane, ids: dict[str, int], _tag: str) -> Shows:
    """Not through the API: as the gateway stores an agent's report."""
    with transaction(plane.sessions) as s:
        s.get_one(Server, ids["server"]).status = "RUNNING"
    return lambda body: bool(body["data"]["status"] == "RUNNING")


def _registered(api: Api, _plane: ControlPlane, _ids: dict[str, int], tag: str) -> Shows:
    api.register(tag)
    return lambda body: tag in {item["name"] for item in _items(body)}


def _ok(r: Any) -> None:
    assert r.status_code in (200, 201), r.text


_ID = {"servers": "server", "serverGroups": "group", "clusters": "cluster"}
CASES: list[tuple[str, Change]] = [
    ("/servers", _registered),
    ("/servers/{server}", _reported_by_agent),
    ("/servers/{server}", _rename("servers")),
    ("/serverGroups", _rename("serverGroups")),
    ("/serverGroups/{group}", _rename("serverGroups")),
    ("/clusters", _rename("clusters")),
    ("/clusters/{cluster}", _rename("clusters")),
    ("/applications", _start_or_stop),
    ("/applications/{app}", _start_or_stop),
    ("armui:/servers", _rename("serverGroups")),
    ("armui:/applications", _start_or_stop),
]


def _get(api: Api, path: str, **kw: Any) -> Any:
    if path.startswith("armui:"):
        headers = {**api.headers, **kw.pop("headers", {})}
        return api.client.get(f"/armui/api/v1{path.removeprefix('armui:')}", headers=headers,
                              **kw)
    return api.get(path, **kw)


@pytest.mark.usefixtures("heard")
def test_every_kept_answer_shows_a_change_on_the_next_call(api: Api, plane: ControlPlane
                                                           ) -> None:
    """Each list and object that answers are kept for, read twice (the second one served from
    what was kept), then changed, through the API or as the gateway writes; one fleet."""
    ids = _fleet(api)
    for n, (path_form, change) in enumerate(CASES):
        path = path_form.format(**ids)
        first = _get(api, path)
        assert first.status_code == 200, first.text
        before = _kept()
        again = _get(api, path)
        assert _kept() == before + 1, f"{path}: the second call is served from what was kept"
        assert again.content == first.content and again.headers["etag"] == first.headers["etag"]

        shows = change(api, plane, ids, f"changed-{n}")
        assert not shows(first.json()), path
        after = _get(api, path)
        assert after.status_code == 200
        assert shows(after.json()), f"{path} after {change}: {after.text}"
        assert after.headers["etag"] != first.headers["etag"]


@pytest.mark.usefixtures("heard")
def test_if_none_match_is_answered_304_until_something_changes(api: Api) -> None:
    ids = _fleet(api)
    path = f"/applications/{ids['app']}"
    tag = api.get(path).headers["etag"]
    for asked in (tag, f"W/{tag}", f'"other", {tag}'):
        r = api.get(path, headers={"If-None-Match": asked})
        assert (r.status_code, r.content, r.headers["etag"]) == (304, b"", tag)
    _start_or_stop(api, api.plane, ids, "")
    r = api.get(path, headers={"If-None-Match": tag})
    assert r.status_code == 200 and r.json()["data"]["desiredStatus"] == "STOPPED"
    assert r.headers["etag"] != tag


@pytest.mark.usefixtures("heard")
def test_a_hostile_if_none_match_gets_the_answer(api: Api) -> None:
    """Garbage, a long list of tags, a tag without quotes, an empty header: none matches, so
    each is answered in full (and kept answers are untouched by it)."""
    ids = _fleet(api)
    path = f"/applications/{ids['app']}"
    whole = api.get(path)
    for asked in ("\x01garbage", ", ".join(f'"{n}"' for n in range(800)),
                  whole.headers["etag"].strip('"'), "", ",,,", 'W/"', "W/W/" + "x" * 4000):
        r = api.get(path, headers={"If-None-Match": asked})
        assert (r.status_code, r.content) == (200, whole.content), asked[:40]


@pytest.mark.usefixtures("heard")
def test_a_kept_answer_is_for_its_environment_and_a_token_that_still_holds(api: Api) -> None:
    _fleet(api)
    assert api.get("/servers").json()["total"] == 3
    assert api.get("/servers").json()["total"] == 3  # kept
    sandbox = api.in_env("Sandbox")
    assert sandbox.get("/servers").json() == {"data": [], "total": 0}
    stranger = Api(api.client, api.plane, api.token, api.org_id, "not-an-env", api.envs)
    assert stranger.get("/servers").status_code == 403
    forged = Api(api.client, api.plane, "forged", api.org_id, api.env_id, api.envs)
    assert forged.get("/servers").status_code == 401

    assert api.client.post("/accounts/api/logout", headers=api.headers).status_code == 204
    assert api.get("/servers").status_code == 401  # signed out: the route itself refuses


@pytest.mark.usefixtures("heard")
def test_what_changes_on_every_call_is_not_kept(api: Api) -> None:
    assert not KEPT.fullmatch("/hybrid/api/v1/servers/registrationToken")
    assert not KEPT.fullmatch("/hybrid/api/v1/applications/1/secureProperties")
    assert not KEPT.fullmatch("/hybrid/api/v1/applications/1/deployments")
    first = api.registration_token()
    assert api.post("/servers/registrationToken").status_code == 200
    assert api.registration_token() != first


def test_memory_for_kept_answers_is_bounded() -> None:
    settings = SimpleNamespace(answer_cache_mb=1)
    answers = Answers(lambda *_: None, plane=lambda: SimpleNamespace(settings=settings))  # type: ignore[arg-type,return-value]
    body = b"x" * 200_000

    def keep(i: int, size: int = len(body)) -> None:
        answers._keep(("o", "e", f"/{i}", b""),
                      Answer(1, 0.0, 200, [], b"x" * size, b'"t"', None))

    for i in range(6):
        keep(i)
    assert [k[2] for k in answers._kept] == ["/1", "/2", "/3", "/4", "/5"]  # oldest out
    assert answers._bytes == 5 * len(body)
    keep(9, 300_000)  # over a quarter of the budget: never kept
    assert ("o", "e", "/9", b"") not in answers._kept


def test_callers_arriving_together_wait_for_one_rendering() -> None:
    """Sixteen callers of one list: one rendering; once it aged, one more, which the callers
    meanwhile do not wait for; after a change, even with the rendering of the older count
    still running, one more (not one per caller)."""
    renders = 0

    async def route(_scope: Any, _receive: Any, send: Any) -> None:
        nonlocal renders
        renders += 1
        await asyncio.sleep(0.05)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": f'{{"n":{renders}}}'.encode()})

    counter = ChangeCounter()
    plane = SimpleNamespace(
        settings=SimpleNamespace(answer_cache_seconds=0.05, answer_cache_mb=1), changes=counter,
        principals=SimpleNamespace(peek=lambda *_: (None, Scope("org", "env"))))
    answers = Answers(route, plane=lambda: plane)  # type: ignore[arg-type,return-value]

    async def get() -> bytes:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await answers({"type": "http", "method": "GET", "path": "/hybrid/api/v1/applications",
                       "query_string": b"", "headers": [(b"authorization", b"Bearer t"),
                                                        (b"x-anypnt-env-id", b"env")]},
                      None, send)  # type: ignore[arg-type]
        return bytes(sent[-1]["body"])

    async def calls() -> tuple[list[bytes], list[bytes]]:
        together = await asyncio.gather(*[get() for _ in range(16)])
        await asyncio.sleep(0.06)  # aged: the next caller renders it again, nothing changed
        again = asyncio.ensure_future(get())
        await asyncio.sleep(0.01)
        assert set(await asyncio.gather(*[get() for _ in range(4)])) == {b'{"n":1}'}, \
            "callers meanwhile are given the aged answer, without waiting"
        assert await again == b'{"n":2}'
        older = asyncio.ensure_future(_after_a_change(counter, get))
        await asyncio.sleep(0.01)  # its rendering runs; then a change, and sixteen callers
        counter.move()
        after = await asyncio.gather(*[get() for _ in range(16)])
        await older
        return together, after

    together, after = asyncio.run(calls())
    assert set(together) == {b'{"n":1}'}
    assert renders == 4 and set(after) == {b'{"n":4}'}


async def _after_a_change(counter: ChangeCounter, get: Callable[[], Any]) -> bytes:
    counter.move()
    return bytes(await get())
