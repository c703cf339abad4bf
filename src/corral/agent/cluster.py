"""This server's part in its cluster: a Raft node (pysyncobj) among the cluster's agents that
elects the primary and replicates a key-value store and named locks.

Traffic between agents is encrypted and authenticated with the cluster's secret, which the
control plane hands to members only, over the gateway. Unicast clusters know their peers from the
desired state (each member's IP and reported cluster port); multicast clusters find them through
UDP multicast announcements signed with the same secret. The node keeps its Raft journal under
the agent's folder, so a restarted agent rejoins with the data, and it runs on its own: the
control plane may be down."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.batteries import ReplDict, ReplLockManager

from corral.agent.raft_guard import MembersOnlyTransport, install
from corral.wire import ClusterMemberState, ClusterReport, ClusterSpec

install()  # no attacker-chosen pickle is ever loaded

log = logging.getLogger(__name__)

DEFAULT_CLUSTER_PORT = 47800
ANNOUNCE_EVERY = 1.0
ANNOUNCE_MAX_AGE = 60.0
LOCK_TTL = 30.0
DISCOVERY_GRACE = 5.0


@dataclass(frozen=True)
class MulticastSettings:
    group: str = "239.255.77.77"
    port: int = 47777
    interface: str = "0.0.0.0"


class RaftNode:
    """One pysyncobj node with the store and the locks; blocking calls, run them in threads."""

    def __init__(self, spec: ClusterSpec, server_id: int, self_address: str,
                 peers: dict[int, str], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.server_id = server_id
        self.self_address = self_address
        self.peers = dict(peers)
        self.ids = {addr: sid for sid, addr in peers.items()} | {self_address: server_id}
        self.store = ReplDict()
        self.locks = ReplLockManager(autoUnlockTime=LOCK_TTL)
        conf = SyncObjConf(
            password=spec.secret or None,
            bindAddress=self_address,  # the member's cluster address only, never 0.0.0.0
            journalFile=str(folder / f"raft-{spec.id}.journal"),
            fullDumpFile=str(folder / f"raft-{spec.id}.dump"),
            connectionRetryTime=0.5,
            connectionTimeout=2.0,
            raftMinTimeout=0.4,
            raftMaxTimeout=1.0,
            appendEntriesPeriod=0.02,
            autoTickPeriod=0.01,
        )
        self.obj = SyncObj(self_address, sorted(peers.values()), conf,
                           consumers=[self.store, self.locks],
                           transportClass=MembersOnlyTransport)

    def leader_id(self) -> int | None:
        leader = self.obj._getLeader()  # pysyncobj's public accessor is this one
        return self.ids.get(str(leader.address)) if leader is not None else None

    def members(self) -> list[dict[str, Any]]:
        out = [{"serverId": self.server_id, "address": self.self_address, "alive": True}]
        for node in self.obj.otherNodes:
            addr = str(node.address)
            out.append({"serverId": self.ids.get(addr), "address": addr,
                        "alive": self.obj.isNodeConnected(node)})
        return sorted(out, key=lambda m: m["serverId"] or 0)

    def close(self) -> None:
        self.obj.destroy_synchronous()


class Announcer(asyncio.DatagramProtocol):
    """Signed multicast announcements: `I am server S of cluster C, listening on port P`."""

    def __init__(self, manager: ClusterManager, spec: ClusterSpec) -> None:
        self.manager = manager
        self.spec = spec
        self.key = hashlib.sha256(b"corral-announce:" + spec.secret.encode()).digest()
        self.members = {m.serverId for m in spec.members}
        self.transport: asyncio.DatagramTransport | None = None

    def sign(self, body: dict[str, Any]) -> bytes:
        raw = json.dumps(body, sort_keys=True, separators=(",", ":"))
        mac = hmac.new(self.key, raw.encode(), hashlib.sha256).hexdigest()
        return json.dumps({"b": body, "m": mac}).encode()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packet = json.loads(data)
            body = packet["b"]
            raw = json.dumps(body, sort_keys=True, separators=(",", ":"))
            good = hmac.new(self.key, raw.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(good, str(packet["m"])):
                return  # a stranger, or another cluster
            if body["c"] != self.spec.id or abs(time.time() - float(body["t"])) > ANNOUNCE_MAX_AGE:
                return
            sid, port = int(body["s"]), int(body["p"])
        except (ValueError, KeyError, TypeError):
            return
        if sid in self.members and sid != self.manager.server_id:
            self.manager.discovered(sid, f"{addr[0]}:{port}")


class ClusterManager:
    """Keeps the Raft node in line with the desired state's cluster section."""

    def __init__(self, folder: Path, server_id: int, cluster_port: int,
                 multicast: MulticastSettings, on_change: Callable[[], None]) -> None:
        self.folder = folder
        self.server_id = server_id
        self.cluster_port = cluster_port
        self.multicast = multicast
        self.on_change = on_change
        self.spec: ClusterSpec | None = None
        self.node: RaftNode | None = None
        self._key: Any = None
        self._peers: dict[int, str] = {}
        self._announce: asyncio.Task[None] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._last_view: Any = None
        self._lock = asyncio.Lock()
        self._discovery_since = 0.0

    # --- following the desired state ------------------------------------------------------

    async def apply(self, spec: ClusterSpec | None) -> None:
        key = None if spec is None else (
            spec.id, spec.secret, spec.multicastEnabled,
            tuple(sorted((m.serverId, m.serverIp, m.clusterPort) for m in spec.members)))
        if key == self._key:
            return
        self._key = key
        await self._stop_discovery()
        self.spec = spec
        if spec is None or not any(m.serverId == self.server_id for m in spec.members):
            await self._replace(None)
            return
        if spec.multicastEnabled:
            known = set(m.serverId for m in spec.members)
            self._peers = {sid: a for sid, a in self._peers.items() if sid in known}
            self._discovery_since = time.monotonic()
            await self._start_discovery(spec)
            await self._rebuild()
        else:
            me = next(m for m in spec.members if m.serverId == self.server_id)
            self._self_ip = me.serverIp or "127.0.0.1"
            self._peers = {m.serverId: f"{m.serverIp}:{m.clusterPort}" for m in spec.members
                           if m.serverId != self.server_id and m.serverIp and m.clusterPort}
            await self._rebuild()

    def discovered(self, server_id: int, address: str) -> None:
        """A signed announcement from a member; the watch loop folds it into the node."""
        if self._peers.get(server_id) != address:
            log.info("cluster peer %s found at %s", server_id, address)
            self._peers[server_id] = address

    async def _rebuild(self) -> None:
        async with self._lock:
            spec = self.spec
            if spec is None:
                return
            if spec.multicastEnabled:
                everyone = len(self._peers) == len(spec.members) - 1
                waited = time.monotonic() - self._discovery_since > DISCOVERY_GRACE
                if not (everyone or waited):
                    return  # give announcements time, so the group starts whole
                self._self_ip = self._multicast_self_ip()
            address = f"{self._self_ip}:{self.cluster_port}"
            if self.node is not None and self.node.peers == self._peers and \
                    self.node.self_address == address:
                return
            await self._replace(None)
            self.node = await asyncio.to_thread(RaftNode, spec, self.server_id, address,
                                                self._peers, self.folder)
            log.info("cluster %s: Raft node %s with peers %s", spec.id, address,
                     sorted(self._peers.values()))
            self.on_change()

    async def _replace(self, node: RaftNode | None) -> None:
        old, self.node = self.node, node
        if old is not None:
            await asyncio.to_thread(old.close)
            self.on_change()

    def _multicast_self_ip(self) -> str:
        if self.multicast.interface not in ("0.0.0.0", ""):
            return self.multicast.interface
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((self.multicast.group, self.multicast.port))
            return str(s.getsockname()[0])
        return "127.0.0.1"

    # --- multicast discovery ------------------------------------------------------------------

    async def _start_discovery(self, spec: ClusterSpec) -> None:
        loop = asyncio.get_running_loop()
        m = self.multicast
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", m.port))
        mreq = struct.pack("4s4s", socket.inet_aton(m.group), socket.inet_aton(m.interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(m.interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        protocol = Announcer(self, spec)
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        self._transport = transport

        async def announce() -> None:
            while True:
                body = {"c": spec.id, "s": self.server_id, "p": self.cluster_port, "t": time.time()}
                with contextlib.suppress(OSError):
                    transport.sendto(protocol.sign(body), (m.group, m.port))
                await asyncio.sleep(ANNOUNCE_EVERY)

        self._announce = asyncio.create_task(announce())

    async def _stop_discovery(self) -> None:
        if self._announce is not None:
            self._announce.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._announce
            self._announce = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # --- what the agent reports -----------------------------------------------------------------

    def view(self) -> ClusterReport | None:
        if self.spec is None or self.node is None:
            return None
        return ClusterReport(
            clusterId=self.spec.id,
            primaryNodeId=self.node.leader_id(),
            members=[ClusterMemberState(serverId=m["serverId"], alive=m["alive"])
                     for m in self.node.members() if m["serverId"] is not None],
        )

    async def watch(self) -> None:
        """Tell the control plane when the primary or reachability changes."""
        while True:
            await asyncio.sleep(0.5)
            if self.spec is not None and self.spec.multicastEnabled:
                await self._rebuild()
            view = self.view()
            snapshot = view.model_dump() if view else None
            if snapshot != self._last_view:
                self._last_view = snapshot
                self.on_change()

    async def close(self) -> None:
        await self._stop_discovery()
        await self._replace(None)
