"""The agent's API for the applications it runs, on loopback only (`CORRAL_AGENT_URL`).

`CORRAL_AGENT_URL` ends in a secret path prefix: a request without it gets 404, so other local
users cannot use the API, and a `Host` other than the loopback address (a web page rebinding
its DNS name to 127.0.0.1) gets 403. Below, paths are relative to that URL.

    GET    /v1/cluster                  membership, this node, the primary (404 outside a cluster)
    GET    /v1/cluster/primary          {"primary": true|false} — "run on the primary only"
    GET    /v1/cluster/store/{key}      {"key", "value"}; 404 when absent
    PUT    /v1/cluster/store/{key}      body {"value": any JSON}; answered once committed
    DELETE /v1/cluster/store/{key}
    POST   /v1/cluster/locks/{name}     {"acquired": bool}; held until released or 30 s pass
    DELETE /v1/cluster/locks/{name}
    POST   /v1/metrics                  {"messages": int, "errors": int, "responseTimeMs": n}
                                        (each optional): counted toward the next measurement

Each application is given its own URL, `<base>/a/<key>`, where the key is derived from the
secret prefix and its name: the agent knows which application pushed a metric, and one
application cannot push for another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from pysyncobj import SyncObjException
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from corral.agent.cluster import ClusterManager, RaftNode
from corral.agent.measure import Pushed

WRITE_TIMEOUT = 5.0
MAX_VALUE_BYTES = 1024 * 1024  # the store is replicated to every member
MAX_METRIC_BYTES = 4096
MAX_METRIC_COUNT = 10**12


def app_key(prefix: str, application: str) -> str:
    return hmac.new(prefix.encode(), application.encode(), hashlib.sha256).hexdigest()[:24]


def app_url(agent_url: str, application: str) -> str:
    """The local API's URL for one application (its `CORRAL_AGENT_URL`)."""
    return f"{agent_url}/a/{app_key(agent_url.rsplit('/', 1)[-1], application)}"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": message}, status_code=status)


class LoopbackHostOnly:
    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.allowed = {f"127.0.0.1:{port}", f"localhost:{port}"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if host.lower() not in self.allowed:
                await _error(403, "this API answers only to its loopback address")(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)


class ApplicationUrls:
    """`/<prefix>/a/<key>/...` is served as `/<prefix>/...` with the application named in
    the request's state; an unknown key is a 404 like any unknown path."""

    def __init__(self, app: ASGIApp, prefix: str,
                 applications: Callable[[], Iterable[str]]) -> None:
        self.app = app
        self.prefix = prefix
        self.applications = applications

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            parts = scope["path"].split("/", 4)  # "", prefix, "a", key, rest
            if len(parts) >= 4 and parts[1] == self.prefix and parts[2] == "a":
                names = {app_key(self.prefix, n): n for n in self.applications()}
                name = names.get(parts[3])
                if name is None:
                    await _error(404, "not found")(scope, receive, send)
                    return
                rest = "/" + parts[4] if len(parts) > 4 else ""
                path = f"/{self.prefix}{rest}"
                scope = {**scope, "path": path, "raw_path": path.encode(),
                         "state": {**scope.get("state", {}), "application": name}}
        await self.app(scope, receive, send)


async def _body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None once it passes `limit` (read no further)."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            return None
    return bytes(raw)


def _count(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= \
            MAX_METRIC_COUNT:
        raise ValueError(f"{key} must be a whole number from 0 to {MAX_METRIC_COUNT}")
    return value


def build(cluster: ClusterManager, prefix: str, port: int, pushed: Pushed | None = None,
          applications: Callable[[], Iterable[str]] = tuple) -> ASGIApp:
    def node_or_error() -> RaftNode | JSONResponse:
        if cluster.spec is None or cluster.node is None:
            return _error(404, "this server is not in a cluster")
        return cluster.node

    async def describe(_: Request) -> Response:
        node = node_or_error()
        if isinstance(node, JSONResponse):
            return node
        assert cluster.spec is not None
        return JSONResponse({"clusterId": cluster.spec.id, "nodeId": cluster.server_id,
                             "primaryNodeId": node.leader_id(), "members": node.members()})

    async def primary(_: Request) -> Response:
        node = node_or_error()
        if isinstance(node, JSONResponse):
            return node
        return JSONResponse({"primary": node.leader_id() == cluster.server_id,
                             "primaryNodeId": node.leader_id()})

    async def store(request: Request) -> Response:
        node = node_or_error()
        if isinstance(node, JSONResponse):
            return node
        key = request.path_params["key"]
        if request.method == "GET":
            missing = object()
            value = node.store.get(key, missing)
            if value is missing:
                return _error(404, f"no value under {key!r}")
            return JSONResponse({"key": key, "value": value})
        try:
            if request.method == "PUT":
                raw = await _body(request, MAX_VALUE_BYTES)
                if raw is None:
                    return _error(413, f"a value is at most {MAX_VALUE_BYTES} bytes")
                try:
                    body = json.loads(raw)
                except ValueError:
                    return _error(400, 'the body must be JSON: {"value": ...}')
                if not isinstance(body, dict) or "value" not in body:
                    return _error(400, 'the body must be JSON: {"value": ...}')
                await run_in_threadpool(node.store.set, key, body["value"], sync=True,
                                        timeout=WRITE_TIMEOUT)
                return JSONResponse({"key": key, "value": body["value"]})
            await run_in_threadpool(node.store.pop, key, None, sync=True, timeout=WRITE_TIMEOUT)
            return Response(status_code=204)
        except SyncObjException as exc:
            return _error(503, f"the cluster could not commit the change ({exc.errorCode}); "
                               "is a majority of its members up?")

    async def lock(request: Request) -> Response:
        node = node_or_error()
        if isinstance(node, JSONResponse):
            return node
        name = request.path_params["name"]
        try:
            if request.method == "POST":
                got: Any = await run_in_threadpool(node.locks.tryAcquire, name, sync=True,
                                                   timeout=WRITE_TIMEOUT)
                return JSONResponse({"lock": name, "acquired": bool(got)})
            await run_in_threadpool(node.locks.release, name, sync=True, timeout=WRITE_TIMEOUT)
            return Response(status_code=204)
        except SyncObjException as exc:
            return _error(503, f"the cluster could not commit the change ({exc.errorCode})")

    async def metrics(request: Request) -> Response:
        application = getattr(request.state, "application", None)
        if application is None or pushed is None:
            return _error(403, "push metrics to the URL your application was given "
                               "(CORRAL_AGENT_URL)")
        raw = await _body(request, MAX_METRIC_BYTES)
        if raw is None:
            return _error(413, f"a metrics body is at most {MAX_METRIC_BYTES} bytes")
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            response = body.get("responseTimeMs")
            if response is not None and (isinstance(response, bool) or
                                         not isinstance(response, int | float) or
                                         not 0 <= response <= 1e9 or
                                         not math.isfinite(response)):
                raise ValueError("responseTimeMs must be a number from 0 to 1e9")
            pushed.add(application, _count(body, "messages"), _count(body, "errors"),
                       None if response is None else float(response))
        except ValueError as exc:
            return _error(400, str(exc) if "must" in str(exc) else
                          'the body must be JSON: {"messages", "errors", "responseTimeMs"}')
        return Response(status_code=204)

    routes = [
        Route("/v1/metrics", metrics, methods=["POST"]),
        Route("/v1/cluster", describe),
        Route("/v1/cluster/primary", primary),
        Route("/v1/cluster/store/{key:path}", store, methods=["GET", "PUT", "DELETE"]),
        Route("/v1/cluster/locks/{name:path}", lock, methods=["POST", "DELETE"]),
    ]
    return LoopbackHostOnly(ApplicationUrls(
        Starlette(routes=[Mount(f"/{prefix}", routes=routes)]), prefix, applications), port)
