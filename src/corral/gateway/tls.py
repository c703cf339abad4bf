"""TLS for the gateway: a certificate from our CA, client certificates required."""

from __future__ import annotations

import ssl

from corral.controlplane import ControlPlane

# asyncio gives every TLS connection a 256 KiB read buffer (SSLProtocol.max_size). Agents send
# a few hundred bytes at a time; with thousands connected that buffer was most of the control
# plane's memory (10,000 agents: 3.2 GB at 256 KiB, 0.85 GB at 16 KiB). A larger record is
# read in several passes; 4 KiB saves another 12 KB per agent (bench: 5,000 agents, 482 MB
# at 16 KiB, 424 MB at 4 KiB).
TLS_READ_BUFFER = 4 * 1024


def server_tls_context(plane: ControlPlane) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    follow_authorities(plane, ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    # agents open a fresh session on every connect: TLS 1.3 session tickets would cost each
    # handshake about a quarter more for nothing (and a restarted gateway forgets their key)
    ctx.num_tickets = 0
    return ctx


def follow_authorities(plane: ControlPlane, ctx: ssl.SSLContext) -> None:
    """The gateway's certificate comes from the CA every agent trusts (the old one, during a
    rotation), and client certificates of every trusted CA pass the handshake. Both apply to
    the next handshakes of the running gateway. A CA retired stays in the context's store
    until the next start; `Authorities.identify` refuses what it signed meanwhile."""
    cert_path, key_path = plane.authorities.presenting.write_tls_pair(
        plane.settings.gateway_hostnames,  # every name agents and replicas may use
        plane.settings.data_dir / "pki",
        "gateway",
    )
    ctx.load_cert_chain(cert_path, key_path)
    ctx.load_verify_locations(cadata=plane.authorities.bundle_pem)
