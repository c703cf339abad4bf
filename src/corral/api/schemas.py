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


class LoginIn(Lenient):
    username: str
    password: str


class TokenIn(Lenient):
    grant_type: str
    client_id: str
    client_secret: str


class RegistrationIn(Lenient):
    muleLabel: str
    signatureRequest: str
    muleVersion: str = ""
    gatewayVersion: str = ""
    agentVersion: str = ""
    environment: str | None = None


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
    username: str
    password: str
    firstName: str = ""
    lastName: str = ""
    email: str = ""


class ConnectedAppIn(Lenient):
    client_name: str


# --- responses ----------------------------------------------------------------------------


class LoginOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    redirectUrl: str = "/home/"


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
