"""Certificates that renew themselves and a CA that can be replaced, with real agents and real
applications: nothing restarts, nobody drops off, and what was replaced is refused."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from corral import wire
from corral.agent.host import hello
from tests.e2e.apps import app_port, app_zip, ask
from tests.e2e.operator import ADMIN_PASSWORD, Operator
from tests.e2e.processes import FORKS, AgentProcess, ServeProcess, enroll
from tests.support import eventually

Agents = Callable[..., AgentProcess]
TTL = 60  # seconds: the shortest lifetime the setting allows; renewal comes at 40


@pytest.fixture
def control_plane(serve: ServeProcess) -> ServeProcess:
    serve.env["CORRAL_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    serve.env["CORRAL_AGENT_CERT_TTL_SECONDS"] = str(TTL)
    serve.env["CORRAL_CA_ROTATION_SPREAD_SECONDS"] = "3"
    serve.start()
    return serve


class Credentials:
    """A copy of an agent's key, certificate and trust bundle as they were at one moment."""

    def __init__(self, agent: AgentProcess, keep: Path) -> None:
        for _ in range(50):  # a renewal replaces the files one after the other: a whole set
            pem = (agent.directory / "server.pem").read_bytes()
            key = (agent.directory / "server.key").read_bytes()
            if _same_key(pem, key) and (agent.directory / "server.pem").read_bytes() == pem:
                break
            time.sleep(0.05)
        keep.mkdir(parents=True, exist_ok=True)
        self.certificate, self.key = keep / "server.pem", keep / "server.key"
        self.ca = keep / "ca.pem"
        self.certificate.write_bytes(pem)
        self.key.write_bytes(key)
        shutil.copy(agent.directory / "ca.pem", self.ca)
        self.parsed = x509.load_pem_x509_certificate(pem)

    @property
    def serial(self) -> int:
        return self.parsed.serial_number


def _same_key(pem: bytes, key: bytes) -> bool:
    try:
        public = serialization.load_pem_private_key(key, None).public_key()
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return False
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return public.public_bytes(*der) == cert.public_key().public_bytes(*der)


def gateway_answer(serve: ServeProcess, creds: Credentials, trust: Path | None = None) -> str:
    """What the gateway does with an agent connection made with these credentials:
    `accepted`, `closed <code> <reason>`, or `tls refused` (no websocket close: the TLS layer
    ended it)."""
    ctx = ssl.create_default_context(cafile=str(trust or creds.ca))
    ctx.load_cert_chain(creds.certificate, creds.key)
    try:
        with connect(f"wss://127.0.0.1:{serve.gateway_port}{wire.CONNECT_PATH}", ssl=ctx,
                     open_timeout=10, close_timeout=2) as ws:
            ws.send(wire.encode(hello(None)))
            ws.recv(timeout=15)
            return "accepted"
    except ConnectionClosed as exc:  # the gateway's answer, before or after the hello
        if exc.rcvd is None:  # TLS 1.3 refuses a client certificate after the handshake
            return "tls refused"
        return f"closed {exc.rcvd.code} {exc.rcvd.reason}"
    except (ssl.SSLError, InvalidHandshake, OSError):
        return "tls refused"


def _log_times(agent: AgentProcess, pattern: str) -> list[dt.datetime]:
    return [dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            for m in re.finditer(r"^(\S+ \S+) .*" + pattern, agent.output(), re.MULTILINE)]


def _reconnect_gaps(agent: AgentProcess) -> list[float]:
    """Seconds from each "certificate renewed" to the next connection."""
    renewed = _log_times(agent, "certificate renewed")
    connected = _log_times(agent, "connected to wss://")
    return [min((c - r).total_seconds() for c in connected if c >= r) for r in renewed
            if any(c >= r for c in connected)]


@pytest.mark.slow
@pytest.mark.every_database
def test_agent_renews_its_certificate_across_lifetimes(
        operator: Operator, agents: Agents, control_plane: ServeProcess, tmp_path: Path) -> None:
    agent = agents("renewing")
    app = operator.deploy("steady", agent.server_id, app_zip())
    operator.wait_app(app["id"], "STARTED")
    port = app_port(agent, "steady")
    pid = ask(port)["pid"]
    held = [Credentials(agent, tmp_path / "cert-0")]
    first_expiry = held[0].parsed.not_valid_after_utc
    statuses: set[str] = set()
    start = time.monotonic()
    while time.monotonic() - start < 3 * TTL + 5 or len(held) < 4:
        assert time.monotonic() - start < 6 * TTL, f"only {len(held) - 1} renewals"
        if (agent.directory / "server.pem").read_bytes() != held[-1].certificate.read_bytes():
            held.append(Credentials(agent, tmp_path / f"cert-{len(held)}"))
            previous = held[-2]
            # once the agent is back with the new one, the one before is refused for good
            operator.wait_server(agent.server_id, "RUNNING")
            answer = eventually(lambda previous=previous: gateway_answer(control_plane, previous),
                                lambda a: a.startswith(f"closed {wire.CLOSE_REVOKED}"),
                                timeout=20, what="the replaced certificate refused")
            assert "revoked" in answer
        statuses.add(operator.data(f"/servers/{agent.server_id}")["status"])
        assert ask(port)["pid"] == pid  # the application is never restarted
        time.sleep(0.5)  # the next look at the server, half a second on
    assert statuses == {"RUNNING"}
    assert dt.datetime.now(dt.UTC) > first_expiry + dt.timedelta(seconds=2 * TTL)
    assert len({c.serial for c in held}) == len(held)
    server = operator.data(f"/servers/{agent.server_id}")
    assert server["certificateExpirationDate"] / 1000 > time.time()
    assert "statusMessage" not in server
    assert gateway_answer(control_plane, held[0]) == "tls refused"  # expired meanwhile
    gaps = _reconnect_gaps(agent)
    assert len(gaps) >= 3
    print(f"[measure] {len(gaps)} renewals; reconnected with the new certificate in "
          f"{', '.join(f'{g * 1000:.0f} ms' for g in gaps)}")


@pytest.mark.slow
@pytest.mark.every_database
def test_late_renewal_needs_a_fresh_token(operator: Operator, agents: Agents,
                                          control_plane: ServeProcess) -> None:
    agent = agents("sleeper")
    app = operator.deploy("keeps", agent.server_id, app_zip())
    operator.wait_app(app["id"], "STARTED")
    pid = ask(app_port(agent, "keeps"))["pid"]
    agent.stop()  # the applications keep running; nobody renews the certificate now
    expiry = x509.load_pem_x509_certificate(
        (agent.directory / "server.pem").read_bytes()).not_valid_after_utc
    # the subject is time itself: the certificate must have ended
    time.sleep(max(0.0, (expiry - dt.datetime.now(dt.UTC)).total_seconds()) + 1)

    before = len(agent.output())
    agent.start()
    said = eventually(lambda: agent.output()[before:],
                      lambda out: "certificate expired" in out, what="the agent saying why")
    assert "corral agent reregister" in said and "registration token" in said
    time.sleep(2)  # proves something does not happen: it does not get back in
    assert operator.data(f"/servers/{agent.server_id}")["status"] == "DISCONNECTED"
    assert ask(app_port(agent, "keeps"))["pid"] == pid

    # a token alone is not enough without the old key; with it, the same server comes back
    token = operator.registration_token()
    r = FORKS.run(["agent", "reregister", "--dir", str(agent.directory),
                   "--token", "not-a-token"], timeout=60)
    assert r.returncode == 1 and "registration token refused" in r.stderr, r.stderr
    r = FORKS.run(["agent", "reregister", "--dir", str(agent.directory), "--token", token],
                  timeout=60)
    assert r.returncode == 0, r.stderr
    operator.wait_server(agent.server_id, "RUNNING", timeout=30)  # the running agent follows
    operator.wait_app(app["id"], "STARTED")
    assert ask(app_port(agent, "keeps"))["pid"] == pid
    assert [a["name"] for a in operator.data(f"/applications?targetId={agent.server_id}")] \
        == ["keeps"]


@pytest.mark.every_database
def test_operator_renewal(operator: Operator, agents: Agents) -> None:
    agent = agents("asked")
    before = (agent.directory / "server.pem").read_bytes()
    server = operator.call("POST", f"/servers/{agent.server_id}/certificate",
                           expect=202).json()["data"]
    assert server["certificateRenewalDue"] <= time.time() * 1000 + 1000
    eventually(lambda: (agent.directory / "server.pem").read_bytes(), lambda b: b != before,
               what="the agent renewing at once")
    after = eventually(lambda: operator.data(f"/servers/{agent.server_id}"),
                       lambda s: "certificateRenewalDue" not in s and s["status"] == "RUNNING",
                       what="the renewal settling")
    renewed = x509.load_pem_x509_certificate((agent.directory / "server.pem").read_bytes())
    assert after["certificateExpirationDate"] == pytest.approx(
        renewed.not_valid_after_utc.timestamp() * 1000, abs=1000)
    operator.call("POST", "/servers/999999/certificate", expect=404)

    # a renewal that a crash interrupted between its renames (the new key in place, the old
    # certificate still beside it): the next start finishes it and connects
    agent.stop()
    new_pem = (agent.directory / "server.pem").read_bytes()
    (agent.directory / "server-next.pem").write_bytes(new_pem)
    (agent.directory / "server.pem").write_bytes(before)
    agent.start()
    operator.wait_server(agent.server_id, "RUNNING")
    eventually(agent.output, lambda out: out.count("connected to wss://") >= 3,
               what="the agent back with its renewed certificate")
    assert (agent.directory / "server.pem").read_bytes() == new_pem
    assert not (agent.directory / "server-next.pem").exists()


@pytest.mark.slow
@pytest.mark.every_database
def test_ca_rotation(operator: Operator, agents: Agents, control_plane: ServeProcess,
                     tmp_path: Path) -> None:
    nodes = [agents(f"rot{i}") for i in range(3)]
    apps = [operator.deploy("svc", n.server_id, app_zip()) for n in nodes]
    for app in apps:
        operator.wait_app(app["id"], "STARTED")
    pids = {n.server_id: ask(app_port(n, "svc"))["pid"] for n in nodes}
    old = {n.server_id: Credentials(n, tmp_path / f"old-{n.server_id}") for n in nodes}
    connects = {n.server_id: n.output().count("connected to wss://") for n in nodes}
    old_ca = operator.data("/certificateAuthority")["signer"]["fingerprint"]

    rotated_at = time.monotonic()
    state = operator.call("POST", "/certificateAuthority/rotate", expect=201).json()["data"]
    assert state["rotating"] and state["retiring"]["fingerprint"] == old_ca
    new_ca = state["signer"]["fingerprint"]
    operator.call("POST", "/certificateAuthority/rotate", expect=409)  # one at a time
    r = operator.call("POST", "/certificateAuthority/retire")  # servers are still on the old
    assert r.status_code == 409 and "3 server(s)" in r.json()["message"]

    statuses: set[str] = set()

    def progress() -> int:
        for n in nodes:
            statuses.add(operator.data(f"/servers/{n.server_id}")["status"])
        return int(operator.data("/certificateAuthority")["serversOnOldCa"])

    eventually(progress, lambda waiting: waiting == 0, timeout=60,
               what="every server moving to the new CA")
    moved_in = time.monotonic() - rotated_at
    assert statuses == {"RUNNING"}
    for n in nodes:
        server = operator.data(f"/servers/{n.server_id}")
        assert server["certificateAuthority"] == new_ca
        assert ask(app_port(n, "svc"))["pid"] == pids[n.server_id]
        assert n.output().count("connected to wss://") == connects[n.server_id] + 1  # one reconnect
        assert len(x509.load_pem_x509_certificates((n.directory / "ca.pem").read_bytes())) == 2

    # before the old CA is retired, its certificates pass the CA check (refused as revoked)...
    both = tmp_path / "both.pem"  # what the agents trust now: either gateway certificate
    shutil.copy(nodes[0].directory / "ca.pem", both)
    assert gateway_answer(control_plane, old[nodes[0].server_id], trust=both).startswith(
        f"closed {wire.CLOSE_REVOKED}")
    retired_at = time.monotonic()
    operator.call("POST", "/certificateAuthority/retire", expect=200)
    # ...after, no certificate of the old CA gets that far
    answer = gateway_answer(control_plane, old[nodes[0].server_id], trust=both)
    assert answer.startswith(f"closed {wire.CLOSE_UNKNOWN_SERVER}") and "trusts" in answer
    # the agents drop the old CA from their bundles, and reconnect with the gateway's new
    # certificate after the control plane restarts
    for n in nodes:
        eventually(lambda n=n: len(x509.load_pem_x509_certificates(
            (n.directory / "ca.pem").read_bytes())), lambda count: count == 1,
            what=f"server {n.server_id} dropping the old CA")
    print(f"[measure] CA rotation: 3 agents on the new CA {moved_in:.1f} s after rotate "
          f"(spread 3 s); bundles pruned {time.monotonic() - retired_at:.1f} s after retire")
    assert control_plane.stop() == 0
    control_plane.start()
    for n in nodes:
        operator.wait_server(n.server_id, "RUNNING", timeout=60)
        assert ask(app_port(n, "svc"))["pid"] == pids[n.server_id]
    fresh = Credentials(nodes[1], tmp_path / "fresh")
    assert gateway_answer(control_plane, old[nodes[0].server_id], trust=fresh.ca) == "tls refused"


def test_hostile_renewals(operator: Operator, control_plane: ServeProcess, tmp_path: Path) -> None:
    """A connected agent (or whoever holds its key) asking for certificates: a CSR that is not
    one, a flood, an oversized message. Refused with the reason, noted on the server, and the
    certificate in use stays the server's."""
    enroll(control_plane, operator.registration_token(), "hostile", tmp_path / "agent")
    creds = Credentials(AgentProcess(tmp_path / "agent"), tmp_path / "copy")
    ctx = ssl.create_default_context(cafile=str(creds.ca))
    ctx.load_cert_chain(creds.certificate, creds.key)
    url = f"wss://127.0.0.1:{control_plane.gateway_port}{wire.CONNECT_PATH}"
    with connect(url, ssl=ctx, open_timeout=10) as ws:
        ws.send(wire.encode(hello(None)))
        assert wire.decode(ws.recv(timeout=15)).type == "desired"

        def ask_for(csr: str) -> wire.CertificateIssued:
            ws.send(wire.encode(wire.RenewCertificate(signatureRequest=csr)))
            while True:
                answer = wire.decode(ws.recv(timeout=15))
                if isinstance(answer, wire.CertificateIssued):
                    return answer

        refused = ask_for("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                          "-----END CERTIFICATE REQUEST-----\n")
        assert refused.certificate is None and "signatureRequest" in (refused.error or "")
        flood = ask_for("whatever")
        assert flood.certificate is None and "moments ago" in (flood.error or "")
        server_id = creds.parsed.subject.get_attributes_for_oid(
            x509.NameOID.COMMON_NAME)[0].value
        server = operator.data(f"/servers/{server_id}")
        assert "certificate renewal failed" in server["statusMessage"]
        ws.send('{"v":1,"type":"renewCertificate","signatureRequest":"' + "A" * 20000 + '"}')
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == wire.CLOSE_BAD_MESSAGE
    # what the server holds is unchanged: the same certificate still connects
    assert gateway_answer(control_plane, creds) == "accepted"
