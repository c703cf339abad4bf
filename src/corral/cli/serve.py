"""`corral serve`: the control plane."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvicorn

from corral import logformat
from corral.cli.common import DataDirOpt, settings_from


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"

if TYPE_CHECKING:
    from corral.config import Settings
    from corral.controlplane import ControlPlane


class QueryRedactor(logging.Filter):
    """Access-log lines keep the path and drop the query string: ARM's login takes credentials
    there (`POST /accounts/login?username=&password=`), and no password belongs in a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) \
                and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


def serve(
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="API listen address [CORRAL_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="API port [CORRAL_PORT]")] = None,
    gateway_port: Annotated[
        int | None, typer.Option(help="Agent gateway port, mutual TLS [CORRAL_GATEWAY_PORT]")
    ] = None,
    tls: Annotated[
        bool | None,
        typer.Option("--tls/--no-tls", help="Serve the API over HTTPS (certificate from Corral's "
                     "CA, in <data-dir>/pki/api.pem) [CORRAL_API_TLS]"),
    ] = None,
    allow_plain_http: Annotated[
        bool | None,
        typer.Option("--allow-plain-http", help="Serve plain HTTP on a non-loopback address "
                     "(only behind a TLS proxy) [CORRAL_ALLOW_PLAIN_HTTP]"),
    ] = None,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", envvar="CORRAL_LOG_FORMAT",
                                help="text for people, json for machines: one object per "
                                "line, with the request id [CORRAL_LOG_FORMAT]"),
    ] = LogFormat.text,
) -> None:
    """Run the control plane: REST API, certificate authority and artifact store.

    The first start creates the organization, the Production and Sandbox environments and the
    admin user (password from CORRAL_ADMIN_PASSWORD, or generated and written to
    <data-dir>/admin-credentials). Stops cleanly on SIGTERM or Ctrl-C."""
    from corral.app import create_app

    logformat.configure(log_format.value)
    from corral.controlplane import CannotStart, ControlPlane

    settings = settings_from(
        data_dir=data_dir, host=host, port=port, gateway_port=gateway_port, api_tls=tls,
        allow_plain_http=allow_plain_http,
    )
    if not settings.api_tls and not settings.allow_plain_http and not is_loopback(settings.host):
        typer.echo(
            f"error: refusing to serve plain HTTP on {settings.host}: passwords and tokens would "
            "cross the network in the clear. Use --tls, put a TLS proxy in front and pass "
            "--allow-plain-http (CORRAL_ALLOW_PLAIN_HTTP=true), or listen on 127.0.0.1.",
            err=True)
        raise typer.Exit(2)
    busy = busy_port(settings)
    if busy:
        typer.echo(f"error: {busy}", err=True)
        raise typer.Exit(2)
    os.umask(0o077)  # everything the control plane writes is its own
    try:
        plane = ControlPlane.open(settings)
    except CannotStart as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    first_start = not plane.has_organization()
    generated = plane.bootstrap()
    if generated:
        typer.echo(
            f"Created admin user {settings.admin_username!r} with password {generated}\n"
            f"(also written to {settings.data_dir / 'admin-credentials'}; shown only once)"
        )
    elif not first_start and settings.admin_password:
        typer.echo(
            f"note: CORRAL_ADMIN_PASSWORD is ignored: {settings.data_dir} was set up before and "
            f"keeps its admin's password. Change it with `corral admin set-user "
            f"{settings.admin_username} --password ...`, or start on a new --data-dir.",
            err=True)
    typer.echo(f"Corral API on {settings.api_url} (data in {settings.data_dir.resolve()})")
    # uvicorn shuts down gracefully, then re-raises the signal it caught; with these no-op
    # handlers in place that re-raise is harmless and a requested stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        asyncio.run(_run(plane, create_app(plane), log_format.value))
    finally:
        plane.close()


def busy_port(settings: Settings) -> str | None:
    """One clear line instead of a traceback when a port is taken."""
    for port, what in ((settings.port, "API port (--port, CORRAL_PORT)"),
                       (settings.gateway_port, "gateway port (--gateway-port, "
                                               "CORRAL_GATEWAY_PORT)")):
        try:
            with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((settings.host, port))
        except OSError as exc:
            return (f"cannot listen on {settings.host}:{port}, the {what}: {exc.strerror}. "
                    f"Stop what uses it or choose another port.")
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _run(plane: ControlPlane, app: Any, log_format: str = "text") -> None:
    """REST API and agent gateway in one event loop; the API's shutdown stops both."""
    from corral.gateway.gateway import Gateway

    settings = plane.settings
    gateway = Gateway(plane, settings.host, settings.gateway_port)
    await gateway.start()
    tls: dict[str, Any] = {}
    if settings.api_tls:
        cert, key = plane.authorities.presenting.write_tls_pair(
            [*settings.public_hostnames, settings.host], settings.data_dir / "pki", "api"
        )
        tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    logging.getLogger("uvicorn.access").addFilter(QueryRedactor())
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info",
                       # none of its own: its lines reach the root logger and read like
                       # every other line, in either format
                       log_config=None,
                       timeout_graceful_shutdown=10,
                       # X-Forwarded-For/-Proto are believed from the configured proxies only
                       proxy_headers=bool(settings.trusted_proxies),
                       forwarded_allow_ips=settings.trusted_proxies or [],
                       h11_max_incomplete_event_size=16 * 1024, **tls)
    )
    try:
        await server.serve()
    finally:
        await gateway.stop()
