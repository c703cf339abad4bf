"""Several clients change the same application, group and cluster at once through a real
`corral serve`, on both databases. Every answer is a success or a clear refusal (409, or 404
for a member that is not there); none is a 5xx from a deadlock, a serialization failure or a
unique violation. Afterwards the state is one that some serial order of the accepted calls
gives: each accepted redeploy took its own number, a server is in at most one group or cluster,
and memberships are what the accepted adds and removes leave."""

from __future__ import annotations

import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.processes import ServeProcess
from tests.model.backends import RealProcess, empty_database
from tests.model.machine import HYBRID, ZIPS
from tests.support import make_csr

CLIENTS = 6
CALLS_EACH = 40
ALLOWED = {200, 201, 202, 204, 404, 409}


class Client:
    def __init__(self, serve: ServeProcess, token: str, org: str, env: str) -> None:
        self.http = httpx.Client(base_url=serve.url, timeout=120, headers={
            "Authorization": f"Bearer {token}", "X-ANYPNT-ORG-ID": org,
            "X-ANYPNT-ENV-ID": env})

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, f"{HYBRID}{path}", **kw)


@pytest.mark.e2e
@pytest.mark.slow
def test_concurrent_changes_serialize(database_url: str, tmp_path: Path) -> None:
    empty_database(database_url)
    backend = RealProcess(database_url, tmp_path / "data",
                          env={"CORRAL_KEEP_DEPLOYMENTS": "1000"})
    try:
        _run(backend)
    finally:
        backend.close()


def _run(backend: RealProcess) -> None:
    token = backend.admin_token()
    org = backend.organization(token)
    envs = backend.http.request("GET", f"/accounts/api/organizations/{org}/environments",
                                headers={"Authorization": f"Bearer {token}"}).json()["data"]
    env = envs[0]["id"]
    admin = Client(backend.serve, token, org, env)
    reg = admin.call("GET", "/servers/registrationToken").json()["data"]
    servers = []
    for i in range(6):
        r = admin.http.post(f"{HYBRID}/servers", headers={"Authorization": f"Bearer {reg}"},
                            json={"muleLabel": f"s{i}", "signatureRequest": make_csr()})
        assert r.status_code == 200, r.text
        servers.append(int(r.json()["serverId"]))
        backend.mark_seen(servers[-1])
    group = admin.call("POST", "/serverGroups",
                       json={"name": "g", "serverIds": servers[:2]}).json()["data"]["id"]
    cluster = admin.call("POST", "/clusters", json={
        "name": "c", "multicastEnabled": True,
        "servers": [{"serverId": s} for s in servers[2:4]]}).json()["data"]["id"]
    free = servers[4:]
    files = {"file": ("v1.zip", ZIPS["v1"], "application/zip")}
    app = admin.call("POST", "/applications", data={"artifactName": "a", "targetId": str(group)},
                     files=files).json()["data"]["id"]

    accepted: Counter[str] = Counter()
    answers: Counter[tuple[str, int]] = Counter()
    problems: list[str] = []
    log: list[tuple[str, int, int]] = []  # (what, server, status) of membership changes
    lock = threading.Lock()

    def one_client(seed: int) -> None:
        rnd = random.Random(seed)
        me = Client(backend.serve, token, org, env)
        for _ in range(CALLS_EACH):
            x = rnd.choice(free)
            what, method, path, kw = rnd.choice([
                ("redeploy", "PATCH", f"/applications/{app}", {}),
                ("stop", "PATCH", f"/applications/{app}", {"json": {"desiredStatus": "STOPPED"}}),
                ("start", "PATCH", f"/applications/{app}", {"json": {"desiredStatus": "STARTED"}}),
                ("rename-group", "PATCH", f"/serverGroups/{group}",
                 {"json": {"name": rnd.choice(["g", "h"])}}),
                ("rename-cluster", "PATCH", f"/clusters/{cluster}",
                 {"json": {"name": rnd.choice(["g", "h"])}}),
                ("group+", "POST", f"/serverGroups/{group}/servers/{x}", {}),
                ("group-", "DELETE", f"/serverGroups/{group}/servers/{x}", {}),
                ("cluster+", "POST", f"/clusters/{cluster}/servers", {"json": {"serverId": x}}),
                ("cluster-", "DELETE", f"/clusters/{cluster}/servers/{x}", {}),
                ("deploy-b", "POST", "/applications",
                 {"data": {"artifactName": "b", "targetId": str(group)}, "files": files}),
                ("delete-b", "DELETE", "/applications/by-name", {}),
            ])
            if what == "delete-b":
                found = me.call("GET", "/applications", params={"artifactName": "b"})
                ids = [a["id"] for a in found.json()["data"]]
                if not ids:
                    continue
                path = f"/applications/{ids[0]}"
            r = me.call(method, path, **kw)
            with lock:
                answers[(what, r.status_code)] += 1
                if r.status_code not in ALLOWED:
                    problems.append(f"{what}: {r.status_code} {r.text[:300]}")
                if r.status_code >= 400 and not r.json().get("message"):
                    problems.append(f"{what}: {r.status_code} without a message")
                if r.status_code < 300:
                    accepted[what] += 1
                    if what in ("group+", "group-", "cluster+", "cluster-"):
                        log.append((what, x, r.status_code))
        me.http.close()

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    print("concurrency:", dict(sorted(answers.items())))
    assert not problems, "\n".join(problems[:30])

    # the state that some serial order of the accepted calls gives
    shown = admin.call("GET", f"/applications/{app}").json()["data"]
    history = admin.call("GET", f"/applications/{app}/deployments").json()["data"]
    for instance in shown["serverArtifacts"]:
        assert instance["deploymentId"] == 1 + accepted["redeploy"]
    assert sorted(h["deploymentId"] for h in history) == list(range(1, 2 + accepted["redeploy"]))
    if accepted["stop"] + accepted["start"] == 0:
        assert shown["desiredStatus"] in ("STARTED", "UPDATED")
    g = admin.call("GET", f"/serverGroups/{group}").json()["data"]
    c = admin.call("GET", f"/clusters/{cluster}").json()["data"]
    in_group = {s["id"] for s in g["servers"]}
    in_cluster = {s["id"] for s in c["servers"]}
    assert not in_group & in_cluster, "a server is in a group and a cluster"
    assert {g["name"], c["name"]} <= {"g", "h", "c"}
    for x in free:
        joined = {kind: sum(1 for w, s, _ in log if s == x and w == f"{kind}+")
                  - sum(1 for w, s, _ in log if s == x and w == f"{kind}-")
                  for kind in ("group", "cluster")}
        assert joined["group"] == (x in in_group), (x, joined, log)
        assert joined["cluster"] == (x in in_cluster), (x, joined, log)
    assert [i["serverId"] for i in shown["serverArtifacts"]] == sorted(in_group)
    b = admin.call("GET", "/applications", params={"artifactName": "b"}).json()["data"]
    assert len(b) <= 1
    servers_listed = admin.call("GET", "/servers").json()["data"]
    for s in servers_listed:
        assert not ("serverGroupId" in s and "clusterId" in s), s
