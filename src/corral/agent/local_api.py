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
"""

from __future__ import annotations

import json
from typing import Any

from pysyncobj import SyncObjException
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from corral.agent.cluster import ClusterManager, RaftNode

WRITE_TIMEOUT = 5.0
MAX_VALUE_BYTES = 1024 * 1024  # the store is replicated to every member


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


def build(cluster: ClusterManager, prefix: str, port: int) -> ASGIApp:
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
                raw = bytearray()
                async for chunk in request.stream():
                    raw += chunk
                    if len(raw) > MAX_VALUE_BYTES:
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

    routes = [
        Route("/v1/cluster", describe),
        Route("/v1/cluster/primary", primary),
        Route("/v1/cluster/store/{key:path}", store, methods=["GET", "PUT", "DELETE"]),
        Route("/v1/cluster/locks/{name:path}", lock, methods=["POST", "DELETE"]),
    ]
    return LoopbackHostOnly(Starlette(routes=[Mount(f"/{prefix}", routes=routes)]), port)
