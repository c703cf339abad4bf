"""Shapes with ARM's field names: request bodies and the documented answers (OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

T = TypeVar("T")


class AnswerShape(BaseModel):
    """What an answer is documented to carry. Answers are rendered by `domain.views`, not by
    these models; tests/api/test_openapi.py holds every answer to its model."""

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


class ReregistrationIn(Strict):
    signatureRequest: Annotated[str, Field(max_length=16384)]
    certificate: Annotated[str, Field(max_length=16384)]
    """the server's previous certificate (PEM)"""
    proof: Annotated[str, Field(max_length=2048)]
    """`signatureRequest` signed with the previous key (base64)"""


class CaRetireIn(Strict):
    force: StrictBool = False


class RegistrationTokenIn(Strict):
    maxUses: int | None = Field(default=None, ge=1, le=1_000_000)
    expiresInSeconds: int | None = Field(default=None, ge=60, le=365 * 24 * 3600)


class RenameIn(Lenient):
    """ARM's clients send the object's `id` along; it is ignored."""

    name: str


class ClusterMemberPatchIn(Lenient):
    serverIp: str


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


class DesiredStatusIn(Lenient):
    """Fields sent along (`id`, `name`) are ignored; an unknown status is refused."""

    desiredStatus: Literal["STARTED", "STOPPED"]
    rollout: dict[str, Any] | None = None
    """Corral's: start or stop a group's or cluster's servers `maxParallel` at a time."""


class ApplicationSourceIn(Lenient):
    """Another application of the organization, whose artifact is deployed again."""

    source: Short = Field(description="HYBRID: an application of Runtime Manager's hybrid API")
    id: StrictInt | Annotated[str, Field(pattern=r"^[0-9]{1,10}$")]


class PromoteIn(Lenient):
    """`POST /applications` as JSON: MuleSoft's promote script deploys an application of one
    environment to the next by reference."""

    applicationSource: ApplicationSourceIn | None = None
    targetId: int
    artifactName: Short
    configuration: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None


class RedeployFromIn(Lenient):
    """`PATCH /applications/{id}/artifact` as JSON: redeploy with another application's
    artifact."""

    applicationSource: ApplicationSourceIn | None = None
    configuration: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None


class EnvironmentIn(Lenient):
    name: str
    type: Literal["production", "sandbox", "design"] = "sandbox"


class EnvironmentRenameIn(Lenient):
    """kloudtek's client sends the whole environment back with a new `name`; the rest is
    ignored."""

    name: str


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
    redirectUrl: str = "/accounts/#/cs/profile/home"


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
    isMaster: bool = True
    parentId: str | None = None
    parentName: str | None = None
    subOrganizationIds: list[str] = Field(
        default_factory=list, description="the mule-maven-plugin walks the tree through it")
    parentOrganizationIds: list[str] = Field(default_factory=list)
    tenantOrganizationIds: list[str] = Field(default_factory=list)


class HierarchyOut(OrganizationRef):
    subOrganizations: list[Any] = Field(default_factory=list)
    tenantOrganizations: list[Any] = Field(default_factory=list)


class MemberOut(BaseModel):
    id: str
    username: str
    firstName: str
    lastName: str
    email: str
    enabled: bool = True


class EnvironmentOut(BaseModel):
    id: str
    name: str
    organizationId: str
    isProduction: bool
    type: str
    clientId: str


class OrganizationOut(OrganizationRef):
    environments: list[EnvironmentOut]


class RollbackIn(BaseModel):
    deploymentId: Annotated[int | None, Field(ge=1, le=2**31 - 1)] = None
    rollout: dict[str, Any] | None = None


class TargetPatchIn(Lenient):
    """Rename (ARM's clients send the object's `id` along; it is ignored), and/or set the
    default rollout policy of a group or cluster (`null` clears it)."""

    name: str | None = None
    rollout: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _something(self) -> TargetPatchIn:
        if self.name is None and "rollout" not in self.model_fields_set:
            raise ValueError("name: Field required")
        return self


class RolloutOut(AnswerShape):
    policy: dict[str, Any]
    desiredStatus: str | None = None
    state: str
    updated: list[int]
    message: str = ""
    startedAt: int
    endedAt: int | None = None


class DeploymentArtifactOut(AnswerShape):
    name: str
    fileChecksum: str
    sha256: str
    fileSize: int


class DeploymentServerOut(AnswerShape):
    serverId: int
    serverName: str
    status: str
    message: str = ""


class DeploymentOut(AnswerShape):
    id: int
    deploymentId: int
    kind: str
    state: str
    artifact: DeploymentArtifactOut
    properties: dict[str, str]
    secureProperties: dict[str, str]
    """Their names; every value reads as a mask (ADR 0011)."""
    note: str
    """What changed that the other fields do not show, e.g. which secure properties."""
    createdBy: str
    startedAt: int
    endedAt: int | None = None
    rolledBackTo: int | None = None
    servers: list[DeploymentServerOut]
    rollout: RolloutOut | None = None


class SecureDigestOut(AnswerShape):
    """`hmacSha256` is HMAC-SHA256 of the value (UTF-8) keyed with `salt` (its UTF-8 text),
    in hex: compare it with the one of a candidate value, never the value itself."""

    salt: str
    hmacSha256: str


class AuditActorOut(AnswerShape):
    kind: str
    id: str | None = None
    name: str


class AuditEventOut(AnswerShape):
    id: int
    time: int
    organizationId: str | None = None
    environmentId: str | None = None
    actor: AuditActorOut
    source: str
    action: str
    resource: str
    description: str = ""
    """the change in words ("redeploy storefront (deployment 3)"), or empty"""
    outcome: str
    status: int


class UserOut(AnswerShape):
    id: str
    username: str
    role: str = "viewer"
    enabled: bool = True
    firstName: str
    lastName: str
    email: str
    createdAt: str
    organization: OrganizationRef
    organizationId: str
    memberOfOrganizations: list[OrganizationRef]
    contributorOfOrganizations: list[OrganizationRef]
    organizationPreferences: dict[str, Any] = Field(default_factory=dict)
    environments: list[str] | None = Field(
        default=None, description="Corral: the environments this user may use; null: all")


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


class ServerOut(AnswerShape):
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
    certificateAuthority: str | None = None
    certificateRenewalDue: int | None = None
    statusMessage: str | None = None


class ServerGroupOut(AnswerShape):
    id: int
    timeCreated: int
    timeUpdated: int
    name: str
    type: Literal["SERVER_GROUP"]
    status: str = Field(description="RUNNING while any of its servers runs (ARM's words)")
    detailedStatus: str = Field(description="Corral: PARTIALLY_RUNNING and the like")
    servers: list[ServerOut]


class VisibilityNode(BaseModel):
    serverId: int
    visibleNodeIds: list[int]
    unknownNodeIps: list[str]


class VisibilityMap(BaseModel):
    mapNodes: list[VisibilityNode]


class ClusterOut(AnswerShape):
    id: int
    timeCreated: int
    timeUpdated: int
    name: str
    type: Literal["CLUSTER"]
    multicastEnabled: bool
    status: str = Field(description="RUNNING while any of its servers runs (ARM's words)")
    detailedStatus: str = Field(description="Corral: PARTIALLY_RUNNING and the like")
    primaryNodeId: int | None = None
    servers: list[ServerOut]
    visibilityMap: VisibilityMap


TargetOut = Annotated[ServerOut | ServerGroupOut | ClusterOut, Field(discriminator="type")]


class ArtifactOut(BaseModel):
    id: int
    storageId: int
    name: str
    fileName: str
    fileChecksum: str = Field(description="SHA-1 of the file, hex")
    fileSize: int
    timeUpdated: int
    sha256: str = Field(description="Corral: SHA-256 of the file, the store's address")


class ServerArtifactOut(BaseModel):
    id: int
    serverId: int
    serverName: str
    artifactName: str
    artifact: ArtifactOut
    deploymentId: int
    desiredStatus: str
    lastReportedStatus: str
    message: str | None = None
    port: int | None = Field(None, description="Corral: where the instance listens (PORT)")
    url: str | None = Field(None, description="Corral: http://SERVER-ADDRESS:PORT/")
    discovered: bool
    timeCreated: int
    timeUpdated: int


class ApplicationOut(AnswerShape):
    id: int
    timeCreated: int
    timeUpdated: int
    name: str
    uptime: int
    artifact: ArtifactOut
    target: TargetOut
    desiredStatus: str = Field(description="STARTED, STOPPED, or UPDATED while a redeploy "
                                           "settles")
    lastReportedStatus: str = Field(description="UNDEPLOYED, STARTED, STOPPED or "
                                                "DEPLOYMENT_FAILED (ARM's words)")
    detailedStatus: str = Field(description="Corral: e.g. PARTIALLY_STARTED, DEPLOYING")
    started: bool
    configuration: dict[str, Any]
    serverArtifacts: list[ServerArtifactOut]


class ErrorOut(BaseModel):
    status: int
    message: str
    errors: list[dict[str, Any]] | None = None
