"""Attacks over HTTP on a real `corral serve`: floods, guessing, hostile bodies, roles."""

from __future__ import annotations

import io
import socket
import sqlite3
import stat
import struct
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.apps import app_zip
from tests.e2e.operator import Operator
from tests.e2e.processes import FORKS, ServeProcess, free_port
from tests.security.conftest import rss_kib

MiB = 1024 * 1024


def login(serve: ServeProcess, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{serve.url}/accounts/login", json={"username": username,
                                                            "password": password}, timeout=30)


# --- 1. a stalled writer does not stall readers ----------------------------------------------


def test_reads_do_not_wait_for_the_writer(operator: Operator, control_plane: ServeProcess) -> None:
    """Another process holds SQLite's write lock (as a long write or a login used to); reads
    still answer, and a write asked meanwhile waits for it rather than fails."""
    db = control_plane.database_url.removeprefix("sqlite:///")  # the database it serves
    holder = sqlite3.connect(db, timeout=1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    written: list[int] = []
    writer = threading.Thread(target=lambda: written.append(httpx.post(
        f"{control_plane.url}/hybrid/api/v1/serverGroups", headers=operator.headers,
        json={"name": "during-the-lock"}, timeout=60).status_code))
    try:
        writer.start()
        for path in ("/servers?limit=1", "/applications", "/serverGroups"):
            assert operator.call("GET", path).status_code == 200
        assert httpx.get(f"{control_plane.url}/accounts/api/users/me",
                         headers=operator.headers, timeout=10).status_code == 200
        writer.join(2)  # proves a wait: the write cannot have gone through
        assert writer.is_alive() and written == [], written
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    writer.join(60)
    assert written == [201]  # it waited for the lock, then went through


# --- 2. guessing is throttled, and failures are logged --------------------------------------


@pytest.mark.password_cost
def test_password_guessing_is_throttled_per_name_and_per_address(
    control_plane: ServeProcess,
) -> None:
    codes = [login(control_plane, "admin", f"wrong-{i}").status_code for i in range(5)]
    assert codes == [401] * 5
    # the fifth failure locks the name and the address for a second; a failure once a lock has
    # passed locks them for twice as long. The checks below need a lock that a loaded machine
    # cannot spend on the calls themselves: each lock is waited out until one lasts 8 s
    waits = []
    for attempt in range(20):
        r = login(control_plane, "admin", f"again-{attempt}")
        if r.status_code == 429:
            waits.append(int(r.headers["Retry-After"]))
            if waits[-1] >= 8:
                break
            time.sleep(waits[-1])
        else:
            assert r.status_code == 401
    assert waits and waits[-1] >= 8, waits  # the lock grew
    locked = login(control_plane, "admin", "e2e-admin-password")
    assert locked.status_code == 429  # even the right password waits out the lock
    assert int(locked.headers["Retry-After"]) >= 1
    assert locked.json()["status"] == 429 and "retry" in locked.json()["message"]
    # the source address is locked too, whatever name it tries next
    assert login(control_plane, "someone-else", "whatever-1").status_code == 429
    assert "failed sign-in for 'admin' from 127.0.0.1" in control_plane.output()


@pytest.mark.password_cost
def test_client_credentials_are_throttled(control_plane: ServeProcess) -> None:
    url = f"{control_plane.url}/accounts/api/v2/oauth2/token"
    body = {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}
    codes = [httpx.post(url, json=body, timeout=30).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]


@pytest.mark.password_cost
def test_unknown_and_known_names_fail_alike(control_plane: ServeProcess) -> None:
    """Same status and body for an unknown name as for a wrong password (the time is the same
    too: both check a hash; bench/ measures it)."""
    unknown = login(control_plane, "no-such-user", "wrong-password")
    known = login(control_plane, "admin", "wrong-password")
    assert unknown.status_code == known.status_code == 401
    assert unknown.text == known.text == "Unauthorized"  # ARM's plain-text answer


# --- 3. hostile bodies never reach memory ----------------------------------------------------


def _stream_body(url: str, path: str, size: int, headers: dict[str, str] | None = None,
                 chunked: bool = False) -> tuple[int, bytes]:
    """Send `size` bytes with a raw socket (declared or chunked); stop when the server answers."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    block = b"x" * (256 * 1024)
    sent = 0
    try:
        while sent < size:
            piece = block[: min(len(block), size - sent)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed: what we want
    sock.settimeout(30)
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_huge_bodies_are_refused_before_reading(
    operator: Operator, control_plane: ServeProcess, chunked: bool
) -> None:
    assert control_plane.proc is not None
    before = rss_kib(control_plane.proc.pid)
    status, _ = _stream_body(control_plane.url, "/accounts/login", 300 * MiB, chunked=chunked)
    assert status == 413
    status, _ = _stream_body(control_plane.url, "/hybrid/api/v1/serverGroups", 150 * MiB,
                             chunked=chunked)
    assert status == 413  # before authentication, before parsing
    status, answer = _stream_body(control_plane.url, "/hybrid/api/v1/applications", 150 * MiB,
                                  chunked=chunked)
    assert status in (401, 413), answer[:200]  # an upload route authenticates first
    grown = rss_kib(control_plane.proc.pid) - before
    assert grown < 20 * 1024, f"the control plane grew by {grown} KiB"
    assert operator.call("GET", "/servers").status_code == 200


def _zip_declaring(entries: int) -> bytes:
    """A tiny archive whose end record claims `entries` entries (a directory bomb)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Procfile", "web: true\n")
    data = bytearray(buf.getvalue())
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, min(entries, 0xFFFF), min(entries, 0xFFFF))
    return bytes(data)


def test_multipart_and_zip_limits(operator: Operator) -> None:
    target = operator.call("POST", "/serverGroups", json={"name": "g"}, expect=201).json()["data"]["id"]
    fields = {f"f{i}": "x" for i in range(40)}
    r = operator.call("POST", "/applications", data={**fields, "artifactName": "a",
                                                      "targetId": str(target)},
                      files={"file": ("a.zip", app_zip(), "application/zip")})
    assert r.status_code == 400 and "parts" in r.json()["message"]
    r = operator.call("POST", "/applications", data={"artifactName": "a", "targetId": str(target),
                                                      "configuration": "x" * (512 * 1024)},
                      files={"file": ("a.zip", app_zip(), "application/zip")})
    assert r.status_code == 400
    r = operator.call("POST", "/applications", data={"artifactName": "a", "targetId": str(target)},
                      files={"file": ("a.zip", _zip_declaring(60_000), "application/zip")})
    assert r.status_code == 400 and "entries" in r.json()["message"]
    r = operator.call("POST", "/applications", headers={
        "Content-Type": "multipart/form-data; boundary=abc"}, content=b"--abc\r\nbroken")
    assert r.status_code == 400
    r = operator.call("PATCH", "/applications/1", headers={"Content-Type": "application/json"},
                      content=b'{"desiredStatus": "' + b"x" * (200 * 1024) + b'"}')
    assert r.status_code == 413  # an upload route's JSON form is held to the small cap
    assert operator.call("GET", "/applications", expect=200).json()["total"] == 0


# --- 4. malformed input is a 400, never a 500 --------------------------------------------------


def test_hostile_values_get_clear_errors(operator: Operator, control_plane: ServeProcess) -> None:
    base = control_plane.url
    for path in ("/servers/2147483648", "/servers/99999999999999999999999", "/applications/-1",
                 "/serverGroups/18446744073709551616", "/clusters/0"):
        r = operator.call("GET", path)
        assert r.status_code == 404, (path, r.status_code)  # an id no object can have
        assert r.json()["status"] == r.status_code
    raw = '{"username": "\\ud800", "password": "x\\u0000y"}'
    r = httpx.post(f"{base}/accounts/login", content=raw,
                   headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code in (400, 401) and r.json()["status"] == r.status_code
    for name in ("\\ud800", "a\\u0000b", "x" * 300):
        r = operator.call("POST", "/serverGroups", content=f'{{"name": "{name}"}}',
                          headers={"content-type": "application/json"})
        assert r.status_code == 400, (name, r.text)
    r = operator.call("GET", "/applications?targetId=99999999999999999999")
    assert r.status_code in (200, 400)
    r = operator.call("GET", "/applications?artifactName=%00")
    assert r.status_code == 400
    r = operator.call("POST", "/applications", data={"artifactName": "app\n", "targetId": "1"},
                      files={"file": ("a.zip", app_zip(), "application/zip")})
    assert r.status_code == 400 and "artifactName" in r.json()["message"]
    assert "Traceback" not in control_plane.output()


# --- 5. roles, and credentials that can be taken away -----------------------------------------


def _user(operator: Operator, name: str, role: str, **extra: object) -> tuple[dict, Operator]:
    org = operator.headers["X-ANYPNT-ORG-ID"]
    r = operator.http.post(f"/accounts/api/organizations/{org}/users", headers=operator.headers,
                           json={"username": name, "password": f"{name}-password", "role": role,
                                 **extra})
    assert r.status_code == 201, r.text
    return r.json(), Operator(operator.serve, f"{name}-password", username=name)


def test_roles(operator: Operator, control_plane: ServeProcess) -> None:
    org = operator.headers["X-ANYPNT-ORG-ID"]
    viewer_info, viewer = _user(operator, "val", "viewer")
    _, op = _user(operator, "otto", "operator")
    assert viewer_info["role"] == "viewer"
    assert viewer.call("GET", "/servers").status_code == 200
    refused = viewer.call("POST", "/serverGroups", json={"name": "nope"})
    assert refused.status_code == 403 and refused.json()["status"] == 403
    assert "operator" in refused.json()["message"]
    assert viewer.call("GET", "/servers/registrationToken").status_code == 403
    assert op.call("POST", "/serverGroups", json={"name": "yes"}).status_code == 201
    assert op.call("GET", "/servers/registrationToken").status_code == 200
    for who in (viewer, op):
        r = who.http.post(f"/accounts/api/organizations/{org}/users", headers=who.headers,
                          json={"username": "mallory", "password": "mallory-password",
                                "role": "admin"})
        assert r.status_code == 403
        r = who.http.post("/accounts/api/connectedApplications", headers=who.headers,
                          json={"client_name": "backdoor", "role": "admin"})
        assert r.status_code == 403
        r = who.http.post(f"/accounts/api/organizations/{org}/environments",
                          headers=who.headers, json={"name": "Shadow"})
        assert r.status_code == 403
    # a connected app's role holds too, and deleting it ends its token at once
    r = operator.http.post("/accounts/api/connectedApplications", headers=operator.headers,
                           json={"client_name": "ci", "role": "viewer"})
    app = r.json()
    token = httpx.post(f"{control_plane.url}/accounts/api/v2/oauth2/token", json={
        "grant_type": "client_credentials", "client_id": app["client_id"],
        "client_secret": app["client_secret"]}).json()["access_token"]
    app_headers = {**operator.headers, "Authorization": f"Bearer {token}"}
    assert operator.http.get("/hybrid/api/v1/servers", headers=app_headers).status_code == 200
    assert operator.http.post("/hybrid/api/v1/serverGroups", headers=app_headers,
                              json={"name": "x"}).status_code == 403
    r = operator.http.patch(f"/accounts/api/connectedApplications/{app['client_id']}",
                            headers=operator.headers, json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert operator.http.get("/hybrid/api/v1/servers", headers=app_headers).status_code == 401
    operator.http.patch(f"/accounts/api/connectedApplications/{app['client_id']}",
                        headers=operator.headers, json={"enabled": True})
    token = httpx.post(f"{control_plane.url}/accounts/api/v2/oauth2/token", json={
        "grant_type": "client_credentials", "client_id": app["client_id"],
        "client_secret": app["client_secret"]}).json()["access_token"]
    app_headers = {**operator.headers, "Authorization": f"Bearer {token}"}
    assert operator.http.delete(f"/accounts/api/connectedApplications/{app['client_id']}",
                                headers=operator.headers).status_code == 204
    assert operator.http.get("/hybrid/api/v1/servers", headers=app_headers).status_code == 401


def test_disabled_or_deleted_users_lose_access_at_once(operator: Operator) -> None:
    org = operator.headers["X-ANYPNT-ORG-ID"]
    info, dana = _user(operator, "dana", "operator")
    users = f"/accounts/api/organizations/{org}/users"
    assert dana.call("GET", "/servers").status_code == 200
    r = operator.http.patch(f"{users}/{info['id']}", headers=operator.headers,
                            json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert dana.call("GET", "/servers").status_code == 401
    assert login(operator.serve, "dana", "dana-password").status_code == 401
    operator.http.patch(f"{users}/{info['id']}", headers=operator.headers, json={"enabled": True})
    dana = Operator(operator.serve, "dana-password", username="dana")
    assert operator.http.delete(f"{users}/{info['id']}", headers=operator.headers).status_code == 204
    assert dana.call("GET", "/servers").status_code == 401
    # the last admin cannot lock the organization out
    me = operator.http.get("/accounts/api/users/me", headers=operator.headers).json()
    r = operator.http.patch(f"{users}/{me['id']}", headers=operator.headers, json={"role": "viewer"})
    assert r.status_code == 409


def test_own_password_change_ends_other_sessions(operator: Operator) -> None:
    _, erin = _user(operator, "erin", "viewer")
    other = Operator(operator.serve, "erin-password", username="erin")
    r = erin.http.put("/accounts/api/users/me/password", headers=erin.headers,
                      json={"currentPassword": "wrong-password", "newPassword": "n" * 12})
    assert r.status_code == 401
    r = erin.http.put("/accounts/api/users/me/password", headers=erin.headers,
                      json={"currentPassword": "erin-password", "newPassword": "erin-new-pass"})
    assert r.status_code == 204
    assert erin.call("GET", "/servers").status_code == 200  # this session stays
    assert other.call("GET", "/servers").status_code == 401  # the others end
    assert login(operator.serve, "erin", "erin-new-pass").status_code == 200


def test_environment_narrowed_role(operator: Operator) -> None:
    org = operator.headers["X-ANYPNT-ORG-ID"]
    envs = operator.http.get(f"/accounts/api/organizations/{org}/environments",
                             headers=operator.headers).json()["data"]
    sandbox = next(e["id"] for e in envs if e["name"] == "Sandbox")
    _, sam = _user(operator, "sam", "operator", environments=[sandbox])
    assert sam.call("GET", "/servers").status_code == 403  # Production
    sam.headers["X-ANYPNT-ENV-ID"] = sandbox
    assert sam.call("POST", "/serverGroups", json={"name": "sandbox-only"}).status_code == 201


# --- 10. serving and registering over an untrusted network ------------------------------------


def test_serve_refuses_plain_http_on_a_public_address(tmp_path: Path) -> None:
    r = FORKS.run(["serve", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0",
                   "--port", str(free_port()), "--gateway-port", str(free_port())], timeout=60)
    assert r.returncode == 2 and "refusing to serve plain HTTP" in r.stderr


# --- 13. smaller findings ---------------------------------------------------------------------


def test_files_headers_and_downloads(operator: Operator, control_plane: ServeProcess) -> None:
    data = control_plane.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    database = Path(control_plane.database_url.removeprefix("sqlite:///"))
    for path in (database, data / "pki" / "ca.key", data / "pki" / "secret.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    page = httpx.get(f"{control_plane.url}/login", timeout=10)
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert operator.call("GET", "/servers").headers["x-content-type-options"] == "nosniff"
    group = operator.call("POST", "/serverGroups", json={"name": "dl"}, expect=201).json()["data"]["id"]
    archive = app_zip()  # once: a zip made later can carry another timestamp
    app = operator.call("POST", "/applications", data={"artifactName": "dl", "targetId": str(group)},
                        files={"file": ("Grüße \"x\".zip", archive, "application/zip")},
                        expect=202).json()["data"]
    r = operator.call("GET", f"/applications/{app['id']}/artifact", expect=200)
    disposition = r.headers["content-disposition"]
    assert disposition.isascii() and "filename*=UTF-8''Gr%C3%BC%C3%9Fe" in disposition
    assert r.content == archive  # byte for byte what was uploaded


@pytest.fixture
def proxied(tmp_path: Path, database_url: str) -> Iterator[ServeProcess]:
    proc = ServeProcess(data_dir=tmp_path / "proxied", database_url=database_url)
    proc.env.update({"CORRAL_ADMIN_PASSWORD": "proxied-password",
                     "CORRAL_TRUSTED_PROXIES": '["127.0.0.1"]'})
    proc.start()
    yield proc
    proc.stop()


def test_console_cookie_is_secure_behind_a_tls_proxy(proxied: ServeProcess) -> None:
    with httpx.Client(base_url=proxied.url, timeout=30) as http:
        form = http.get("/login", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in form.headers["set-cookie"]
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        # a Secure cookie is not sent back over plain HTTP by a client: hand it over as the
        # browser behind the proxy would
        r = http.post("/login", headers={"X-Forwarded-Proto": "https",
                                         "Cookie": f"corral_login_csrf={csrf}"},
                      data={"username": "admin", "password": "proxied-password", "csrf": csrf})
        assert r.status_code == 303
        cookie = next(v for k, v in r.headers.multi_items()
                      if k == "set-cookie" and v.startswith("corral_session="))
        assert "Secure" in cookie
