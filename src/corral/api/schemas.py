"""Wire shapes with ARM's field names: request bodies and the documented responses."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class Data(BaseModel, Generic[T]):
    data: T


class DataList(BaseModel, Generic[T]):
    data: list[T]
    total: int


# --- requests -----------------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


Short = Annotated[str, Field(max_length=255)]
Secret = Annotated[str, Field(max_length=1024)]
Role = Literal["viewer", "operator", "admin"]


class LoginIn(Lenient):
    username: Short
    password: Secret


class TokenIn(Lenient):
    grant_type: Short
    client_id: Short
    client_secret: Secret


class RegistrationIn(Lenient):
    muleLabel: Short
    signatureRequest: Annotated[str, Field(max_length=16384)]
    muleVersion: Annotated[str, Field(max_length=64)] = ""
    gatewayVersion: Annotated[str, Field(max_length=64)] = ""
    agentVersion: Annotated[str, Field(max_length=64)] = ""
    environment: Short | None = None


class RegistrationTokenIn(Strict):
    maxUses: int | None = Field(default=None, ge=1, le=1_000_000)
    expiresInSeconds: int | None = Field(default=None, ge=60, le=365 * 24 * 3600)


class RenameIn(Strict):
    name: str


class ServerGroupIn(Lenient):
    name: str
    serverIds: list[int] = Field(default_factory=list)


class ClusterMemberIn(Lenient):
    serverId: int
    serverIp: str | None = None


class ClusterIn(Lenient):
    name: str
    multicastEnabled: bool = False
    servers: list[ClusterMemberIn] = Field(default_factory=list)


class DesiredStatusIn(Strict):
    desiredStatus: Literal["STARTED", "STOPPED"]


class EnvironmentIn(Lenient):
    name: str
    type: Literal["production", "sandbox", "design"] = "sandbox"


class UserIn(Lenient):
    username: Short
    password: Secret
    firstName: Short = ""
    lastName: Short = ""
    email: Short = ""
    role: Role = "viewer"
    environments: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100,
        description="environment ids the role holds in; absent: every environment")


class UserPatchIn(Strict):
    role: Role | None = None
    enabled: bool | None = None
    password: Secret | None = None
    environments: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100)


class ConnectedAppPatchIn(Strict):
    role: Role | None = None
    enabled: bool | None = None
    environments: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100)


class PasswordIn(Strict):
    currentPassword: Secret
    newPassword: Secret


class ConnectedAppIn(Lenient):
    client_name: Short
    role: Role = "viewer"
    environments: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=100)


# --- responses ----------------------------------------------------------------------------


class LoginOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    redirectUrl: str = "/home/"


class RegistrationTokenOut(BaseModel):
    data: str
    caFingerprint: str = Field(description="sha256 of the CA certificate, for --ca-fingerprint")


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class OrganizationRef(BaseModel):
    id: str
    name: str
    isRoot: bool = True


class EnvironmentOut(BaseModel):
    id: str
    name: str
    organizationId: str
    isProduction: bool
    type: str


class OrganizationOut(OrganizationRef):
    environments: list[EnvironmentOut]


class UserOut(Wire):
    id: str
    username: str
    role: str = "viewer"
    enabled: bool = True
    firstName: str
    lastName: str
    email: str
    createdAt: str
    organization: OrganizationRef
    memberOfOrganizations: list[OrganizationRef]
    contributorOfOrganizations: list[OrganizationRef]


class ConnectedAppOut(BaseModel):
    client_id: str
    client_name: str
    client_secret: str | None = None
    org_id: str
    role: str = "viewer"
    enabled: bool = True


class Address(BaseModel):
    ip: str
    networkInterface: str | None = None


class ServerOut(Wire):
    id: int
    timeCreated: int
    timeUpdated: int
    name: str
    type: Literal["SERVER"]
    serverType: str = "MULE"
    muleVersion: str
    gatewayVersion: str
    agentVersion: str
    status: str
    serverGroupId: int | None = None
    serverGroupName: str | None = None
    clusterId: int | None = None
    clusterName: str | None = None
    serverIp: str | None = None
    currentClusteringIp: str | None = None
    currentClusteringPort: int | None = None
    addresses: list[Address]
    runtimeInformation: dict[str, Any]
    licenseExpirationDate: int | None = None
    certificateExpirationDate: int | None = None
    lastSeen: int | None = None


class ServerGroupOut(Wire):
    id: int
    timeCreated: int
    timeUpdated: int
    name: str
    type: Literal["SERVER_GROUP"]
    status: str
    servers: list[ServerOut]


class VisibilityNode(BaseModel):
    serverId: int
    visibleNodeIds: list[int]
    unknownNodeIps: list[str]


class VisibilityMap(BaseModel):
    mapNodes: list[VisibilityNode]


class ClusterOut(Wire):
    id: int
    timeCreated: int
    timeUpdated: int
    name: str
    type: Literal["CLUSTER"]
    multicastEnabled: bool
    status: str
    primaryNodeId: int | None = None
    servers: list[ServerOut]
    visibilityMap: VisibilityMap


TargetOut = Annotated[ServerOut | ServerGroupOut | ClusterOut, Field(discriminator="type")]


class ArtifactOut(BaseModel):
    id: int
    storageId: str
    name: str
    fileName: str
    fileChecksum: str = Field(description="SHA-1 of the file, hex")
    fileSize: int
    timeUpdated: int


class ServerArtifactOut(BaseModel):
    id: int
    serverId: int
    serverName: str
    artifactName: str
    deploymentId: int
    desiredStatus: str
    lastReportedStatus: str
    message: str | None = None
    port: int | None = Field(None, description="Corral: where the instance listens (PORT)")
    url: str | None = Field(None, description="Corral: http://SERVER-ADDRESS:PORT/")
    discovered: bool
    timeCreated: int
    timeUpdated: int


class ApplicationOut(Wire):
    id: int
    timeCreated: int
    timeUpdated: int
    name: str
    uptime: int
    artifact: ArtifactOut
    target: TargetOut
    desiredStatus: str
    lastReportedStatus: str
    started: bool
    configuration: dict[str, Any]
    serverArtifacts: list[ServerArtifactOut]


class ErrorOut(BaseModel):
    status: int
    message: str
    errors: list[dict[str, Any]] | None = None
