"""The cluster port under attack: a forged Raft message from someone holding the cluster key,
a member that was removed, and where Raft listens."""

from __future__ import annotations

import json
import os
import pickle
import socket
import sqlite3
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from pysyncobj.encryptor import getEncryptor

from corral.agent.layout import AgentDir
from tests.e2e.apps import app_zip
from tests.e2e.operator import Operator
from tests.e2e.processes import AgentProcess, ServeProcess, free_port
from tests.e2e.test_cluster import _unicast, put, wait_primary, wait_value
from tests.support import eventually, local_http

Agents = Callable[..., AgentProcess]


def cluster_secret(agent: AgentProcess) -> str:
    state = json.loads((agent.directory / "state.json").read_text())
    sealed = state["desired"]["cluster"]["secret"]
    assert sealed.startswith("sealed:")  # never in the clear in the agent's files
    return AgentDir(agent.directory).unseal(sealed)


class Boom:
    """What an attacker pickles: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def forge(port: int, secret: str, marker: Path) -> None:
    """Connect to a member's Raft port and send a pickle built to run a command, encrypted with
    the cluster key exactly as pysyncobj frames a message."""
    data = zlib.compress(pickle.dumps(Boom(marker), 2), 3)
    data = getEncryptor(secret).encrypt_at_time(data, int(time.monotonic()))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack("i", len(data)) + data)
        time.sleep(1)  # the member reads it before the connection closes


def listening_addresses(port: int) -> set[str]:
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found


def test_forged_messages_and_removed_members(
    tmp_path: Path, operator: Operator, agents: Agents, control_plane: ServeProcess
) -> None:
    ports = [free_port() for _ in range(3)]
    nodes = [agents(f"k{i}", "--cluster-port", str(port)) for i, port in enumerate(ports)]
    cluster = _unicast(operator, nodes)
    wait_primary(nodes)
    app = operator.deploy("steady", cluster["id"], app_zip())
    operator.wait_app(app["id"], "STARTED")
    pids = sorted(nodes[0].app_pids("steady"))

    # Raft listens on the member's cluster address only
    assert listening_addresses(ports[0]) == {"127.0.0.1"}

    # the key is in no database column, and not in the clear on disk
    secret = cluster_secret(nodes[0])
    database = Path(control_plane.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as db:
        dump = "\n".join(db.iterdump())
    assert secret not in dump

    # someone holding the current key sends a pickle that would run a command: refused
    marker = tmp_path / "pwned"
    forge(ports[1], secret, marker)
    time.sleep(1)  # proves something does not happen: no command runs
    assert not marker.exists()
    assert put(nodes[1], "after-attack", 1).status_code == 200
    wait_value(nodes[2], "after-attack", 1)

    # an application cannot push an oversized value into the replicated store
    huge = local_http().put(f"{nodes[0].local_api}/v1/cluster/store/huge",
                     content=b'{"value": "' + b"x" * (2 * 1024 * 1024) + b'"}', timeout=10)
    assert huge.status_code == 413 and huge.json()["status"] == 413
    assert local_http().get(f"{nodes[0].local_api}/v1/cluster/store/huge", timeout=5).status_code == 404

    # a removed member keeps its old key; the others move to a new one, without restarts
    removed = nodes[2]
    old = cluster_secret(removed)
    operator.call("DELETE", f"/clusters/{cluster['id']}/servers/{removed.server_id}", expect=204)
    eventually(lambda: (cluster_secret(nodes[0]), cluster_secret(nodes[1])),
               lambda keys: old not in keys and keys[0] == keys[1],
               what="the remaining members' new cluster key")
    wait_primary(nodes[:2])
    assert put(nodes[0], "after-removal", 2).status_code == 200
    wait_value(nodes[1], "after-removal", 2)
    assert sorted(nodes[0].app_pids("steady")) == pids  # the group re-formed; apps kept running
    forge(ports[0], old, marker)
    assert not marker.exists()
