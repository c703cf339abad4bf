"""What stands between the cluster's Raft port and the network.

pysyncobj exchanges pickled Python objects. Encrypted with the cluster secret or not, unpickling
what a peer sends would let anyone holding (or having once held) the secret run code on every
member. So:

- `install()` replaces pysyncobj's unpickling, on the wire and in its journal files, with an
  unpickler that builds plain data only (numbers, text, bytes, lists, tuples, dicts, sets) and
  refuses every class and function: a forged message fails to decode and its connection ends.
- `MembersOnlyTransport` accepts connections only from the addresses of current members, refuses
  read-only and utility connections (status, membership changes), and requires that a peer
  claiming to be node `ip:port` really connects from `ip`."""

from __future__ import annotations

import io
import logging
import pickle
from typing import Any

import pysyncobj.journal
import pysyncobj.pickle
from pysyncobj.transport import TCPTransport

log = logging.getLogger(__name__)

# Protocol 2 (pysyncobj's) pickles `bytes` through `_codecs.encode` and sets through the builtin
# constructors; nothing else outside plain data is ever needed.
_ALLOWED = {(module, name) for module in ("builtins", "__builtin__")
            for name in ("set", "frozenset", "bytearray")} | {("_codecs", "encode")}


class PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name} from a cluster peer")


def loads(data: bytes | str) -> Any:
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    return PlainDataUnpickler(io.BytesIO(raw)).load()


def load(file: Any) -> Any:
    return PlainDataUnpickler(file).load()


def install() -> None:
    """Idempotent; every module of pysyncobj that unpickles goes through these."""
    pysyncobj.pickle.loads = loads
    pysyncobj.pickle.load = load
    pysyncobj.journal.loads = loads  # imported by name there


class MembersOnlyTransport(TCPTransport):
    """pysyncobj's TCP transport, closed to everyone but the current members."""

    def _onNewIncomingConnection(self, conn: Any) -> None:
        peer = _peer_ip(conn)
        members = {str(node.address).rsplit(":", 1)[0] for node in self._nodes}
        if peer is None or peer not in members:
            log.warning("cluster port: refused a connection from %s (not a member)", peer)
            conn.disconnect()
            return
        super()._onNewIncomingConnection(conn)

    def _onIncomingMessageReceived(self, conn: Any, message: Any) -> None:
        if self._syncObj.encryptor and not conn.sendRandKey:
            super()._onIncomingMessageReceived(conn, message)  # the key exchange
            return
        node = self._nodeAddrToNode.get(message) if isinstance(message, str) else None
        if node is None or str(message).rsplit(":", 1)[0] != _peer_ip(conn):
            log.warning("cluster port: refused %s claiming %r", _peer_ip(conn),
                        str(message)[:80])
            conn.disconnect()
            self._unknownConnections.discard(conn)
            return
        super()._onIncomingMessageReceived(conn, message)


def _peer_ip(conn: Any) -> str | None:
    sock = getattr(conn, "_TcpConnection__socket", None)
    try:
        return str(sock.getpeername()[0]) if sock is not None else None
    except OSError:
        return None

