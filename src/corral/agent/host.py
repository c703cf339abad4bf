"""What an agent tells the control plane about its host when it connects (`wire.Hello`)."""

from __future__ import annotations

import contextlib
import fcntl
import platform
import socket
import struct
import sys

from corral import wire
from corral.agent import AGENT_VERSION


def local_addresses() -> list[dict[str, str]]:
    """IPv4 address of each interface (Linux ioctl; empty where unsupported)."""
    found = []
    for _, name in socket.if_nameindex():
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            found.append({"ip": socket.inet_ntoa(packed[20:24]), "networkInterface": name})
    return found


def hello(cluster_port: int | None) -> wire.Hello:
    return wire.Hello(
        agentVersion=AGENT_VERSION,
        hostname=socket.gethostname(),
        addresses=[wire.Address(**a) for a in local_addresses()],
        osInformation={"name": platform.system(), "release": platform.release(),
                       "version": platform.version(), "architecture": platform.machine()},
        pythonInformation={"version": platform.python_version(),
                           "implementation": platform.python_implementation(),
                           "executable": sys.executable},
        clusterPort=cluster_port,
    )
