"""The wire contract between control plane and agent: every message both sides send, built and
parsed here and nowhere else. It sits below every package (like the error hierarchy), so the
gateway and the agent cannot drift apart.

Level-triggered: the control plane sends the whole desired state with a revision; the agent
converges and reports what it actually runs, naming the revision it answers. A message of
another protocol version is refused by both sides with `CLOSE_UNSUPPORTED_VERSION`. See
docs/agent-protocol.md."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from corral.jsontext import dumps

VERSION = 1
CONNECT_PATH = "/agent/v1/connect"
ARM_CONNECT_PATH = "/mule"
"""Where ARM's registration points agents (`mcmWebsocketUrl`); the gateway serves the same
conversation on both paths, and an agent connects to the URL it was given."""
CONNECT_PATHS = frozenset({CONNECT_PATH, ARM_CONNECT_PATH})
REPLICA_LOGS_PATH = "/corral/replica/v1/logs"
"""Where one control-plane replica asks another for a log of an agent it holds (ADR 0008)."""
ARTIFACT_PATH = "/agent/v1/artifacts/"
MIN_HEARTBEAT_SECONDS = 10.0
"""The shortest ping interval the gateway may be set to (`CORRAL_HEARTBEAT_SECONDS`)."""
AGENT_PING_SECONDS = 60.0
"""How often an agent pings its gateway, to notice a control plane that went silent (a lost
network rather than a closed connection). Liveness the other way comes from the gateway's own
pings: agents send no periodic messages."""
CHUNK_BYTES = 256 * 1024

# websocket close codes (4000–4999 are for applications)
CLOSE_UNKNOWN_SERVER = 4401
CLOSE_REVOKED = 4403
CLOSE_REPLACED = 4409
CLOSE_BAD_MESSAGE = 4400
CLOSE_UNSUPPORTED_VERSION = 4426
RENEWED_REASON = "certificate renewed"
"""An agent closes (1000) with this reason to reconnect with its renewed certificate at once:
the gateway gives it a moment before it counts the server as gone."""
CLOSE_RESTARTING = 1012  # RFC 6455 "service restart": the reason says when to come back
RECONNECTS_PER_SECOND = 500
"""The pace a gateway asks its agents to come back at after a planned restart (about what one
process completes in mutual-TLS handshakes a second on two cores)."""


def restart_reason(agents: int) -> str:
    """The close reason a stopping gateway sends: a window wide enough that its agents, each
    waiting a random part of it, come back at `RECONNECTS_PER_SECOND`."""
    return f"restarting; reconnect within {min(600, max(1, round(agents / RECONNECTS_PER_SECOND)))} s"


def reconnect_window(reason: str) -> float:
    """The window a restart reason names (seconds), 1 if it names none."""
    match = re.search(r"reconnect within (\d{1,4}) s", reason)
    return float(match.group(1)) if match else 1.0

InstanceStatus = Literal["UNDEPLOYED", "DEPLOYING", "STARTING", "STARTED", "STOPPING", "STOPPED",
                         "DEPLOYMENT_FAILED"]
"""What an agent may report of one application instance."""
DesiredStatus = Literal["STARTED", "STOPPED"]


class UnsupportedVersion(ValueError):
    """A well-formed message of a protocol version this side does not speak."""


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    v: int = VERSION


class Address(BaseModel):
    ip: str
    networkInterface: str | None = None


class Hello(Message):
    """Agent → control plane, first message of every connection."""

    type: Literal["hello"] = "hello"
    agentVersion: str
    hostname: str
    addresses: list[Address] = Field(default_factory=list)
    osInformation: dict[str, Any] = Field(default_factory=dict)
    pythonInformation: dict[str, Any] = Field(default_factory=dict)
    clusterPort: int | None = None


class ArtifactRef(BaseModel):
    sha256: str
    sha1: str = ""
    size: int
    fileName: str = ""


class DesiredApplication(BaseModel):
    name: str
    applicationId: int
    deploymentId: int
    desiredStatus: DesiredStatus
    artifact: ArtifactRef
    properties: dict[str, str] = Field(default_factory=dict)
    secureProperties: dict[str, str] = Field(default_factory=dict, repr=False)
    """Passed to the process like properties, and kept by the agent only sealed (ADR 0011)."""
    logLevels: dict[str, str] = Field(default_factory=dict)
    """Logger name → level (ARM's logging service); changes without a redeployment."""


class ClusterMember(BaseModel):
    serverId: int
    serverIp: str | None = None
    clusterPort: int | None = None


class ClusterSpec(BaseModel):
    id: int
    name: str
    multicastEnabled: bool
    secret: str = ""
    members: list[ClusterMember]


class Desired(Message):
    """Control plane → agent: everything the server should run, as of `revision`."""

    type: Literal["desired"] = "desired"
    revision: int
    serverId: int
    serverName: str
    cluster: ClusterSpec | None = None
    applications: list[DesiredApplication] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    """Every gateway the agent may connect to (`CORRAL_GATEWAY_URLS`); empty: keep what it
    knows."""
    metricsSeconds: float = Field(default=15.0, ge=0)
    """How often the agent sends `Measurements` (`CORRAL_METRICS_SECONDS`); 0: never."""
    renewCertificateWithin: float | None = Field(default=None, ge=0)
    """An operator or a CA rotation asks for a certificate renewal within these seconds."""
    trustedCas: list[str] = Field(default_factory=list, max_length=8)
    """Fingerprints of the CAs the control plane trusts; the agent drops any other from its
    trust bundle (the old CA, once a rotation ends). Empty: keep the bundle as it is."""


class ApplicationReport(BaseModel):
    name: str
    deploymentId: int
    status: InstanceStatus
    message: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    serving: bool | None = None
    """A deployment of the application passed its checks and runs here now: the reported one
    (`STARTED`), or an earlier one still running while this one is fetched (`DEPLOYING`, or
    `DEPLOYMENT_FAILED` when fetching it failed). Absent (older agents): `status == STARTED`."""


class ClusterMemberState(BaseModel):
    serverId: int
    alive: bool


class ClusterReport(BaseModel):
    """What one member sees of its cluster: the Raft leader and which peers it reaches."""

    clusterId: int
    primaryNodeId: int | None = None
    members: list[ClusterMemberState] = Field(default_factory=list)


class Report(Message):
    """Agent → control plane: what actually runs; a full snapshot, so reports are idempotent."""

    type: Literal["report"] = "report"
    revision: int
    applications: list[ApplicationReport] = Field(default_factory=list)
    cluster: ClusterReport | None = None


MAX_COUNT = 2**53
"""Bounds a hostile agent cannot exceed in a measurement (and JSON numbers stay exact)."""


class ServerSample(BaseModel):
    """The server as a whole, over the last interval."""

    cpu: float = Field(ge=0, le=100)
    """percent of all cores"""
    memoryUsed: int = Field(ge=0, le=MAX_COUNT)
    memoryTotal: int = Field(ge=0, le=MAX_COUNT)
    diskUsed: int = Field(ge=0, le=MAX_COUNT)
    """of the file system holding the agent's data folder"""
    diskTotal: int = Field(ge=0, le=MAX_COUNT)
    loadAverage: float = Field(ge=0, le=1e6)
    """one-minute load average"""
    threads: int = Field(ge=0, le=MAX_COUNT)
    """threads of the agent and of every application process"""


class InstanceSample(BaseModel):
    """One application's processes (each process tree summed) over the last interval, and
    what the application pushed to its agent (`POST $CORRAL_AGENT_URL/v1/metrics`); those
    are None when it never pushed."""

    name: str = Field(max_length=255)
    cpu: float = Field(ge=0, le=1e5)
    """percent of one core (a busy process on two cores shows 200)"""
    rss: int = Field(ge=0, le=MAX_COUNT)
    threads: int = Field(ge=0, le=MAX_COUNT)
    fds: int = Field(ge=0, le=MAX_COUNT)
    restarts: int = Field(ge=0, le=MAX_COUNT)
    uptime: float = Field(ge=0, le=1e12)
    messages: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    errors: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    responseTimeMs: float | None = Field(default=None, ge=0, le=1e12)


class Measurements(Message):
    """Agent → control plane, every `Desired.metricsSeconds`: small and self-contained (the
    control plane stamps the time it arrived, so agents' clocks do not matter)."""

    type: Literal["measurements"] = "measurements"
    server: ServerSample
    applications: list[InstanceSample] = Field(default_factory=list, max_length=1000)


class Heartbeat(Message):
    type: Literal["heartbeat"] = "heartbeat"


class LogsRequest(Message):
    """Control plane → agent: the last `lines` of an application's log; `follow` streams on."""

    type: Literal["logs"] = "logs"
    requestId: str
    application: str
    lines: int = 100
    follow: bool = False


class LogsCancel(Message):
    type: Literal["logsCancel"] = "logsCancel"
    requestId: str


class LogLines(Message):
    """Agent → control plane: a batch of log lines answering a request; `done` ends it."""

    type: Literal["logLines"] = "logLines"
    requestId: str
    lines: list[str] = Field(default_factory=list)
    done: bool = False
    error: str | None = None


class RenewCertificate(Message):
    """Agent → control plane: the CSR of a new key, for the next certificate of the server
    whose certificate opened this connection (docs/certificates.md)."""

    type: Literal["renewCertificate"] = "renewCertificate"
    signatureRequest: str = Field(max_length=16 * 1024)


class CertificateIssued(Message):
    """Control plane → agent: the answer to `RenewCertificate`: the certificate and every CA
    the agent must trust from now on (PEM bundle), or why not (`error`)."""

    type: Literal["certificate"] = "certificate"
    certificate: str | None = Field(default=None, max_length=16 * 1024)
    caCertificates: str = Field(default="", max_length=64 * 1024)
    error: str | None = None


Any_ = (Hello | Desired | Report | Measurements | Heartbeat | LogsRequest | LogsCancel
        | LogLines | RenewCertificate | CertificateIssued)
AnyMessage = Annotated[Any_, Field(discriminator="type")]
_adapter: TypeAdapter[Any_] = TypeAdapter(AnyMessage)


def decode(raw: str | bytes) -> Any_:
    """Parse one message; ValueError for anything malformed, UnsupportedVersion (a ValueError)
    for a message of another protocol version."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("a message is a JSON object")
    if data.get("v") != VERSION:
        raise UnsupportedVersion(f"protocol version {data.get('v')!r} is not supported; this "
                                 f"side speaks version {VERSION}")
    return _adapter.validate_python(data)


def close_code_for(exc: ValueError) -> tuple[int, str]:
    """The close code and reason that answer a message that could not be decoded."""
    if isinstance(exc, UnsupportedVersion):
        return CLOSE_UNSUPPORTED_VERSION, str(exc)[:120]
    return CLOSE_BAD_MESSAGE, "malformed message"


def encode(message: Message) -> str:
    return message.model_dump_json()


def desired_text(*, revision: int, server_id: int, server_name: str, cluster: str | None,
                 applications: Iterable[str], tail: str = "") -> str:
    """A `Desired` message joined from parts encoded once per batch (an application shared by
    ten thousand servers is encoded once): `cluster` and each application are JSON text from
    `dumps`, `tail` the optional fields from `fields_text`. The same message `Desired` reads
    (tests/unit/test_wire.py)."""
    return (f'{{"v":{VERSION},"type":"desired","revision":{revision},"serverId":{server_id},'
            f'"serverName":{dumps(server_name).decode()},"cluster":{cluster or "null"},'
            f'"applications":[{",".join(applications)}]{tail}}}')


def fields_text(**fields: Any) -> str:
    """`,"name":value` for each field that is not None: optional fields of a message that is
    joined from parts (`desired_text`)."""
    return "".join(f',"{name}":{dumps(value).decode()}' for name, value in fields.items()
                   if value is not None)

