"""Tables. Servers, server groups and clusters share one id space through `targets`."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def new_secret_nonce() -> str:
    return secrets.token_hex(16)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_uuid() -> str:
    return str(uuid.uuid4())


NEVER_REUSED: dict[str, Any] = {"sqlite_autoincrement": True}
"""Table option: an id is never handed out twice, even after the newest row is deleted (ARM
never reuses one; a script polling a deleted application's id must not find another). SQLite
otherwise gives the next row the highest id plus one; PostgreSQL's sequences never go back.
Revision 0011 rebuilt the existing tables with it."""


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)

    environments: Mapped[list[Environment]] = relationship(
        back_populates="organization", order_by="Environment.name"
    )


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))  # production | sandbox
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)

    organization: Mapped[Organization] = relationship(back_populates="environments")

    @property
    def is_production(self) -> bool:
        return self.type == "production"


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    first_name: Mapped[str] = mapped_column(String(255), default="")
    last_name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    environment_ids: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    """None: every environment of the organization; else the role holds in these only."""
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)

    organization: Mapped[Organization] = relationship()


class ConnectedApp(Base):
    __tablename__ = "connected_apps"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    secret_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    environment_ids: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)

    organization: Mapped[Organization] = relationship()


class AccessToken(Base):
    """A bearer token for a user or a connected app; only its SHA-256 is kept."""

    __tablename__ = "access_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str | None] = mapped_column(
        ForeignKey("connected_apps.client_id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


class RegistrationToken(Base):
    """The token an agent registers with; it names one org + environment."""

    __tablename__ = "registration_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"), index=True)
    sealed_token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    max_uses: Mapped[int | None] = mapped_column(Integer, default=None)
    uses: Mapped[int] = mapped_column(Integer, default=0)

    environment: Mapped[Environment] = relationship()


class Target(Base):
    """What an application can be deployed to: a server, a server group or a cluster."""

    __tablename__ = "targets"
    __table_args__ = (UniqueConstraint("environment_id", "type", "name"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    time_created: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    time_updated: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)
    rollout_policy: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """A group's or cluster's default rollout policy for redeploys (None: all at once)."""

    __mapper_args__ = {"polymorphic_on": "type", "polymorphic_identity": "TARGET"}


class Server(Target):
    __tablename__ = "servers"
    id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True)
    mule_version: Mapped[str] = mapped_column(String(64), default="")
    gateway_version: Mapped[str] = mapped_column(String(64), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="CREATED")
    server_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("server_groups.id"), index=True
    )
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id"), index=True)
    cluster_ip: Mapped[str | None] = mapped_column(String(64))
    addresses: Mapped[list[Any]] = mapped_column(default=list)
    runtime_information: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_seen: Mapped[int | None] = mapped_column(BigInteger)
    certificate_serial: Mapped[str] = mapped_column(String(64), default="")
    certificate_expires_at: Mapped[int | None] = mapped_column(BigInteger)
    certificate_issued_at: Mapped[int | None] = mapped_column(BigInteger)
    """None: registered before renewal existed (its renewal point is then reckoned from a
    one-year certificate)."""
    certificate_issuer: Mapped[str | None] = mapped_column(String(80))
    """Fingerprint of the CA that signed the certificate in use (None: the CA before the first
    rotation)."""
    next_certificate_serial: Mapped[str | None] = mapped_column(String(64))
    """Issued by a renewal, not used yet: the agent's next connection with it makes it the
    certificate (and revokes the old one)."""
    next_certificate_expires_at: Mapped[int | None] = mapped_column(BigInteger)
    renewal_due: Mapped[int | None] = mapped_column(BigInteger)
    """An operator or a CA rotation asked for a renewal by this time (ms)."""
    certificate_problem: Mapped[str | None] = mapped_column(String(300))
    """Why the last renewal failed; cleared by the next that succeeds."""
    desired_revision: Mapped[int] = mapped_column(Integer, default=0)
    """Grows whenever what this server should run changes; the state itself is assembled from
    the applications that reach the server when it is pushed (ADR 0007)."""
    replica_id: Mapped[str | None] = mapped_column(String(36))
    """The control-plane replica whose gateway holds this server's agent (log reads are routed
    there, ADR 0008); None while it is away."""

    server_group: Mapped[ServerGroup | None] = relationship(
        foreign_keys=[server_group_id], back_populates="servers"
    )
    cluster: Mapped[Cluster | None] = relationship(
        foreign_keys=[cluster_id], back_populates="servers"
    )

    __mapper_args__ = {"polymorphic_identity": "SERVER"}


class ServerGroup(Target):
    __tablename__ = "server_groups"
    id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True)

    servers: Mapped[list[Server]] = relationship(
        foreign_keys=[Server.server_group_id], back_populates="server_group", order_by=Server.id
    )

    __mapper_args__ = {"polymorphic_identity": "SERVER_GROUP"}


class Cluster(Target):
    __tablename__ = "clusters"
    id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True)
    multicast_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    secret: Mapped[str] = mapped_column(String(64), default=new_secret_nonce)
    """Not the secret itself: a nonce from which the sealer derives it at push time
    (`corral.domain.agents`); a new nonce whenever the membership changes."""
    primary_node_id: Mapped[int | None] = mapped_column(Integer)
    visibility: Mapped[dict[str, Any]] = mapped_column(default=dict)

    servers: Mapped[list[Server]] = relationship(
        foreign_keys=[Server.cluster_id], back_populates="cluster", order_by=Server.id
    )

    __mapper_args__ = {"polymorphic_identity": "CLUSTER"}


class RevokedCertificate(Base):
    """The CA's revocation list: a deleted server's certificate stays refused."""

    __tablename__ = "revoked_certificates"
    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    server_id: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class Artifact(Base):
    """One uploaded file; its bytes live in the content-addressed store under `sha256`."""

    __tablename__ = "artifacts"
    __table_args__ = (NEVER_REUSED,)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    file_name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    sha1: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger)
    time_updated: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class Application(Base):
    __tablename__ = "applications"
    __table_args__ = (UniqueConstraint("target_id", "name"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"), index=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id"), index=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    desired_status: Mapped[str] = mapped_column(String(16), default="STARTED")
    configuration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    deployment_id: Mapped[int] = mapped_column(Integer, default=1)
    time_started: Mapped[int | None] = mapped_column(BigInteger)
    time_created: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    time_updated: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)

    target: Mapped[Target] = relationship()
    artifact: Mapped[Artifact] = relationship()
    server_artifacts: Mapped[list[AppInstance]] = relationship(
        back_populates="application",
        cascade="all, delete-orphan",
        order_by="AppInstance.server_id",
    )


class AppInstance(Base):
    """An application's instance on one server: what its agent last reported. What is desired
    there is the application's own row (ADR 0007). ARM's JSON calls it a `serverArtifact`; so
    do the table and the relationship."""

    __tablename__ = "server_artifacts"
    __table_args__ = (UniqueConstraint("application_id", "server_id"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    server_id: Mapped[int] = mapped_column(
        ForeignKey("servers.id", ondelete="CASCADE"), index=True
    )
    deployment_id: Mapped[int] = mapped_column(Integer, default=0)
    """The deployment the reported status is about (0: nothing reported yet); an older one
    than the application's means the instance is still being updated."""
    last_reported_status: Mapped[str] = mapped_column(String(32), default="UNDEPLOYED")
    message: Mapped[str | None] = mapped_column(Text)
    port: Mapped[int | None] = mapped_column(Integer)
    """Where the instance listens (`PORT`), as its agent last reported."""
    serving: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A deployment of the application (this one or an earlier one still running while the
    next is fetched) passed its checks and runs there, as its agent last reported: a
    redeploying instance is not read as `UNDEPLOYED` (ADR 0006)."""
    discovered: Mapped[bool] = mapped_column(Boolean, default=False)
    time_created: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    time_updated: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)

    application: Mapped[Application] = relationship(back_populates="server_artifacts")
    server: Mapped[Server] = relationship()


class TargetComponent(Base):
    """An agent component of a target (tracking, logging) as ARM's clients read and set it."""

    __tablename__ = "target_components"
    __table_args__ = (UniqueConstraint("target_id", "name"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    configuration: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ControlPlaneSecret(Base):
    """Keys every replica shares (the CA, the sealing key), sealed with the master key that each
    replica is given; the database alone opens none of them."""

    __tablename__ = "control_plane_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class Replica(Base):
    """A running `corral serve`: where its gateway answers other replicas (ADR 0008)."""

    __tablename__ = "replicas"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    gateway_url: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    seen_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class AuditEvent(Base):
    """One change asked of the control plane (through the API, the console or the CLI), and
    how it ended. Written once; nothing in Corral updates or deletes one except the retention
    sweep (`CORRAL_AUDIT_RETENTION_DAYS`)."""

    __tablename__ = "audit_events"
    __table_args__ = (NEVER_REUSED,)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str | None] = mapped_column(String(36), index=True)
    environment_id: Mapped[str | None] = mapped_column(String(36), index=True)
    time: Mapped[int] = mapped_column(BigInteger, default=now_ms, index=True)
    actor_kind: Mapped[str] = mapped_column(String(32))
    """user, connectedApp, registrationToken, or anonymous"""
    actor_id: Mapped[str | None] = mapped_column(String(255))
    actor_name: Mapped[str] = mapped_column(String(255), default="", index=True)
    source: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(255), index=True)
    """METHOD and route: `POST /hybrid/api/v1/applications`"""
    resource: Mapped[str] = mapped_column(String(1024), index=True)
    """the path the change was asked of: `/hybrid/api/v1/applications/12`"""
    description: Mapped[str] = mapped_column(String(255), default="", server_default="")
    """the change in words, where the domain said it: `redeploy storefront (deployment 3)`"""
    outcome: Mapped[str] = mapped_column(String(16))
    """success or failure"""
    status: Mapped[int] = mapped_column(Integer)


class Deployment(Base):
    """One deployment of an application (its first deploy, each redeploy, each rollback): the
    exact artifact and configuration, who made it, and how it ended, per server."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("application_id", "number"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    """The application's `deploymentId` this deployment set (what agents report about)."""
    kind: Mapped[str] = mapped_column(String(16))
    """deploy, redeploy or rollback"""
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"))
    configuration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default="IN_PROGRESS")
    started_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    ended_at: Mapped[int | None] = mapped_column(BigInteger)
    servers: Mapped[list[Any]] = mapped_column(default=list)
    """When it ended: per server, the last status reported about it and its message."""
    rolled_back_to: Mapped[int | None] = mapped_column(Integer)
    """For a rollback: the deployment whose artifact and configuration it restored."""
    note: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    """What changed that the fields do not show: which secure properties (never a value)."""

    artifact: Mapped[Artifact] = relationship()


class Rollout(Base):
    """A redeploy that reaches its target's servers a few at a time, each batch gated on the
    health of the one before (`domain/rollouts.py`). Its whole state is here, so the leader
    that drives it can die and another go on."""

    __tablename__ = "rollouts"
    __table_args__ = (NEVER_REUSED,)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    history_id: Mapped[int] = mapped_column(
        "deployment_id", ForeignKey("deployments.id", ondelete="CASCADE"))
    """The history row of the deployment being rolled out (a `Deployment`'s id; the
    applications' and instances' `deployment_id` is a deployment's number)."""
    previous_id: Mapped[int | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"))
    """The deployment the servers not yet reached keep running (and a revert returns to);
    None for a first deployment: they run nothing of it yet."""
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    desired_status: Mapped[str | None] = mapped_column(String(16))
    """A start or stop spread over the servers (the deployment stays the same); None for a
    new deployment."""
    state: Mapped[str] = mapped_column(String(16), default="RUNNING", index=True)
    """RUNNING, WAITING (a canary awaiting promotion), SUCCEEDED, FAILED, REVERTED, CANCELLED;
    the first two are `ACTIVE_ROLLOUT`"""
    promoted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated: Mapped[list[Any]] = mapped_column(default=list)
    """Servers given the new deployment so far, in order."""
    healthy_since: Mapped[dict[str, Any]] = mapped_column(default=dict)
    batch_started_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    message: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    ended_at: Mapped[int | None] = mapped_column(BigInteger)


ACTIVE_ROLLOUT = ("RUNNING", "WAITING")
"""The states of a rollout still going: it holds pins, and it ends its deployment."""


class RolloutPin(Base):
    """A server a rollout has not reached yet: it keeps running `history_id` (a history row)
    instead of its application's current deployment."""

    __tablename__ = "rollout_pins"
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"),
                                           primary_key=True, index=True)
    history_id: Mapped[int | None] = mapped_column(
        "deployment_id", ForeignKey("deployments.id", ondelete="CASCADE"))
    """None: the application does not run here yet (a first deployment rolling out)."""
    desired_status: Mapped[str | None] = mapped_column(String(16))
    """For a start or stop spread over the servers: the status this server keeps meanwhile."""


class MetricPoint(Base):
    """One measurement of a server (`application_id` None) or of an application's instance on
    it. Raw points (`step` 0) arrive every `CORRAL_METRICS_SECONDS`; the leader folds those
    older than `CORRAL_METRICS_RAW_SECONDS` into one-minute means (`step` 60) and drops points
    older than `CORRAL_METRICS_RETENTION_SECONDS` (`domain/measurements.py`)."""

    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_series", "server_id", "application_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    server_id: Mapped[int] = mapped_column(Integer)
    application_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[int] = mapped_column(BigInteger, index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    cpu: Mapped[float] = mapped_column(Float, default=0.0)
    memory: Mapped[int] = mapped_column(BigInteger, default=0)
    """memory used (server) or resident set size (instance), bytes"""
    memory_total: Mapped[int | None] = mapped_column(BigInteger)
    disk_used: Mapped[int | None] = mapped_column(BigInteger)
    disk_total: Mapped[int | None] = mapped_column(BigInteger)
    load_average: Mapped[float | None] = mapped_column(Float)
    threads: Mapped[int] = mapped_column(Integer, default=0)
    fds: Mapped[int | None] = mapped_column(Integer)
    restarts: Mapped[int | None] = mapped_column(Integer)
    uptime: Mapped[float | None] = mapped_column(Float)
    messages: Mapped[int | None] = mapped_column(BigInteger)
    errors: Mapped[int | None] = mapped_column(BigInteger)
    response_time_ms: Mapped[float | None] = mapped_column(Float)


class Alert(Base):
    """ARM's standalone alert: a condition on some resources of one environment, and what to
    do when it starts or stops holding (`actions`: email, and Corral's webhook)."""

    __tablename__ = "alerts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    condition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actions: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)


class AlertState(Base):
    """What the evaluator last saw of one resource under one alert: whether the condition
    held (`firing`) and, for conditions that are events, the value an event changes
    (`token`: a version, a member list, a deployment)."""

    __tablename__ = "alert_states"
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"),
                                          primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    firing: Mapped[bool] = mapped_column(Boolean, default=False)
    token: Mapped[str | None] = mapped_column(Text)
    since: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class AlertEvent(Base):
    """One firing of an alert (`FIRING`, or `RESOLVED` when its condition stops holding):
    the alert's history, kept until the alert is deleted."""

    __tablename__ = "alert_events"
    __table_args__ = (NEVER_REUSED,)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"),
                                          index=True)
    state: Mapped[str] = mapped_column(String(16))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_name: Mapped[str] = mapped_column(String(255), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    value: Mapped[float | None] = mapped_column(Float)
    at: Mapped[int] = mapped_column(BigInteger, default=now_ms, index=True)


class AlertDelivery(Base):
    """One notification of one event to one destination, written in the event's transaction
    and sent by the leader afterwards: a restart loses none, and one marked `DELIVERED` is
    never sent again. After its last attempt it stays `DEAD` (the dead letters)."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (NEVER_REUSED,)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("alert_events.id", ondelete="CASCADE"),
                                          index=True)
    kind: Mapped[str] = mapped_column(String(16))
    """email or webhook"""
    destination: Mapped[str] = mapped_column(Text)
    """comma-separated addresses, or the webhook's URL"""
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="PENDING", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    last_error: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[int | None] = mapped_column(BigInteger)
