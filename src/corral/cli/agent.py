"""`corral agent`: what runs on each managed server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run Corral's agent on a managed server.", no_args_is_help=True)

DirOpt = Annotated[Path, typer.Option("--dir", help="The agent's folder (key, certificate, apps)")]


@app.command()
def register(
    token: Annotated[str, typer.Argument(help="Registration token (GET /servers/registrationToken)")],
    name: Annotated[str, typer.Argument(help="Name of this server in Corral")],
    manager: Annotated[str, typer.Option("--manager", help="Control plane URL, e.g. http://cp:8080")],
    directory: DirOpt,
    ca_cert: Annotated[Path | None, typer.Option(
        help="CA certificate to trust when --manager is https (Corral's own CA)")] = None,
    ca_fingerprint: Annotated[str | None, typer.Option(
        help="Pin the control plane's CA (sha256:..., shown with the registration token); "
             "required for a plain http:// --manager")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Register over plain http:// without a pin (trusts the network)")
    ] = False,
) -> None:
    """Register this machine: make a key and CSR, get it signed, keep it all in --dir."""
    from corral.agent.layout import AgentError
    from corral.agent.register import register as do_register

    try:
        identity = do_register(manager, directory, token, name, ca_cert,
                               ca_fingerprint=ca_fingerprint, insecure=insecure)
    except AgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"registered server {identity.serverId} ({name}); "
               f"start it with: corral agent run --dir {directory}")


@app.command()
def reregister(
    directory: DirOpt,
    token: Annotated[str, typer.Option("--token", help="A registration token of the server's "
                                       "environment (`corral server token`)")],
    ca_cert: Annotated[Path | None, typer.Option(
        help="CA certificate to trust when the control plane's URL is https "
             "[default: the agent's own trust bundle]")] = None,
) -> None:
    """Renew the certificate of the server in --dir when the agent can no longer do it (it
    expired while the agent was off). Same server, same applications: they keep running, and a
    running agent picks the new certificate up by itself."""
    from corral.agent.layout import AgentError
    from corral.agent.register import reregister as do_reregister

    try:
        identity = do_reregister(directory, token, ca_cert)
    except AgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"server {identity.serverId} ({identity.name}) has a new certificate; a running "
               f"agent uses it within a minute, or start it with: corral agent run --dir "
               f"{directory}")


@app.command()
def run(
    directory: DirOpt,
    cluster_port: Annotated[int | None, typer.Option(
        help="TCP port for Raft traffic with the other agents of this server's cluster "
             "[default: 47800]")] = None,
    api_port: Annotated[int | None, typer.Option(
        help="Loopback port of the local API given to applications as CORRAL_AGENT_URL "
             "[default: chosen once, then kept]")] = None,
    multicast_group: Annotated[str, typer.Option(help="Multicast clusters: group")] = "239.255.77.77",
    multicast_port: Annotated[int, typer.Option(help="Multicast clusters: UDP port")] = 47777,
    multicast_interface: Annotated[str, typer.Option(
        help="Multicast clusters: address of the interface to announce on")] = "0.0.0.0",
    app_user: Annotated[str | None, typer.Option(
        help="User the applications run as. An agent running as root uses `nobody` unless told "
             "otherwise; `root` is allowed but lets applications read the agent's key "
             "[default: nobody as root, else the agent's own user]")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the agent in the foreground until SIGTERM or Ctrl-C. Applications keep running when
    the agent stops; the next start adopts them."""
    from corral.agent.cluster import MulticastSettings
    from corral.agent.layout import AgentError
    from corral.agent.runner import run_agent

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        asyncio.run(run_agent(directory, cluster_port, api_port, MulticastSettings(
            multicast_group, multicast_port, multicast_interface), app_user))
    except AgentError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
