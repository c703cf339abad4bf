"""Where an alert's webhook may point. Any operator can save one, and the control plane then
connects to it from inside the network: a webhook must not be a way to reach the control
plane's own loopback services, the cloud's metadata address or link-local peers
(`CORRAL_WEBHOOK_DENY`), nor to scan ports and read the answers. Checked when the alert is
saved, and again for the very address connected to (a name that resolves elsewhere by then,
DNS rebinding, is refused too)."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from corral.errors import InvalidInput

HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

def networks(entries: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(e, strict=False) for e in entries]


def denied(address: str, deny: Sequence[Network]) -> bool:
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in deny if net.version == ip.version)


def check_url(url: str, deny: Sequence[Network], *, resolve: bool = True) -> str:
    """A webhook URL that may be saved: http or https, a host whose name is valid IDNA, a
    port in range, and no address in `deny` (the name is resolved when `resolve`)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
        host = parts.hostname
    except ValueError as exc:
        raise InvalidInput(f"a webhook's url is not valid: {exc}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInput("a webhook's url must be http:// or https:// with a host")
    if port == 0:
        raise InvalidInput("a webhook's url must not name port 0")
    host = host.rstrip(".")
    if not _is_address(host):
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidInput(f"a webhook's host is not a valid name: {exc}") from exc
        if not HOST_NAME.fullmatch(ascii_host):
            raise InvalidInput("a webhook's host is not a valid name")
    if (host == "localhost" or host.endswith(".localhost")) and \
            _any_denied(["127.0.0.1", "::1"], deny):
        raise InvalidInput("a webhook may not point at this machine (CORRAL_WEBHOOK_DENY)")
    if _is_address(host):
        if denied(host, deny):
            raise InvalidInput(f"a webhook may not point at {host} (CORRAL_WEBHOOK_DENY)")
    elif resolve:
        try:
            found = {str(info[4][0]) for info in socket.getaddrinfo(
                host, port or 443, type=socket.SOCK_STREAM)}
        except (OSError, UnicodeError):
            found = set()  # unknown today: checked again when it is connected to
        if _any_denied(found, deny):
            raise InvalidInput(f"a webhook may not point at {host}: it resolves to an "
                               "address refused by CORRAL_WEBHOOK_DENY")
    return url


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _any_denied(addresses: Iterable[str], deny: Sequence[Network]) -> bool:
    return any(denied(a, deny) for a in addresses)
