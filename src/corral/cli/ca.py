"""`corral ca`: the control plane's certificate authority, and replacing it (a rotation)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.cli.api_client import Api
from corral.cli.output import Format, OutputOpt, console, print_json, show_list, show_object, when

ca_app = typer.Typer(help="The CA that signs every server's certificate, and its rotation "
                          "(admins).", no_args_is_help=True)


def _show(output: Format, state: dict[str, Any]) -> None:
    if output is Format.json:
        print_json(state)
        return
    retiring = state.get("retiring") or {}
    show_object(output, state, [
        ("Signing CA", lambda s: s["signer"]["fingerprint"]),
        ("  subject", lambda s: s["signer"]["subject"]),
        ("  valid until", lambda s: when(s["signer"]["notAfter"])),
        ("Rotation", lambda s: "under way" if s["rotating"] else "none"),
        ("Old CA", lambda s: retiring.get("fingerprint")),
        ("Servers", lambda s: s["servers"]),
        ("Still on the old CA", lambda s: s["serversOnOldCa"] if s["rotating"] else None),
    ])
    if state["rotating"] and state["waitingServers"]:
        console.print()
        show_list(output, state["waitingServers"], [
            ("ID", lambda s: s["id"]), ("NAME", lambda s: s["name"]),
            ("STATUS", lambda s: s["status"])], "")
        if state["serversOnOldCa"] > len(state["waitingServers"]):
            console.print(f"… and {state['serversOnOldCa'] - len(state['waitingServers'])} more")


@ca_app.command("status")
def ca_status(output: OutputOpt = Format.table) -> None:
    """The signing CA and, during a rotation, the servers still on the old one."""
    _show(output, Api.from_config().ca.status())


@ca_app.command("rotate")
def ca_rotate(output: OutputOpt = Format.table) -> None:
    """Make a new CA. Both are trusted until `retire-old`; every agent renews its certificate
    under the new one (within CORRAL_CA_ROTATION_SPREAD_SECONDS) without a restart."""
    state = Api.from_config().ca.rotate()
    if output is Format.table:
        console.print("A new CA signs from now on; the agents are moving to it. Follow with "
                      "`corral ca status`, then `corral ca retire-old`.")
    _show(output, state)


@ca_app.command("retire-old")
def ca_retire_old(
    force: Annotated[bool, typer.Option(
        "--force", help="Even with servers still on the old CA (they are then refused, and "
                        "must be registered anew)")] = False,
    output: OutputOpt = Format.table,
) -> None:
    """End a rotation: the old CA is dropped, and a certificate it signed is refused."""
    state = Api.from_config().ca.retire(force=force)
    if output is Format.table:
        console.print("The old CA is retired.")
    _show(output, state)
