"""The one settings object: every knob is a `CORRAL_*` environment variable or a CLI flag."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from corral import wire
from corral.wire import MIN_HEARTBEAT_SECONDS

WEBHOOK_DENY = ("127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128", "169.254.0.0/16",
                "fe80::/10", "fd00:ec2::254/128")
"""Loopback, "this host", link-local (which holds 169.254.169.254, the metadata address of
most clouds) and AWS's IPv6 metadata address."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CORRAL_", extra="ignore")

    data_dir: Path = Path("./corral-data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite in the data dir"
    )
    host: str = "127.0.0.1"
    port: int = 8080
    gateway_port: int = 8443
    api_tls: bool = Field(
        default=False, description="serve the REST API over HTTPS with a certificate of our CA"
    )
    public_hostnames: list[str] = Field(
        default_factory=list, description="extra names agents use to reach this control plane"
    )

    master_key: SecretStr | None = Field(
        default=None, description="seals the keys replicas share in the database (the CA, the "
        "sealing key); every replica is given the same one. Unset: the keys stay in the data "
        "folder (one control plane)")
    master_key_file: Path | None = Field(
        default=None, description="a file holding the master key (instead of CORRAL_MASTER_KEY)")
    artifact_store: str = Field(
        default="file", description="where artifacts are kept: file (the data folder), "
        "database (chunks in the database, shared by replicas), or s3://bucket/prefix")
    s3_endpoint_url: str | None = Field(
        default=None, description="an S3-compatible endpoint (MinIO, ...); unset: AWS")
    gateway_urls: list[str] = Field(
        default_factory=list, description="every gateway agents may connect to "
        '(JSON list of "wss://host:port"); unset: this one')
    replica_url: str | None = Field(
        default=None, description="wss://host:port at which other replicas reach this one's "
        "gateway (log reads are routed there); unset: the first public hostname")

    password_hash: Literal["rfc9106", "owasp"] = Field(
        default="rfc9106", description="how passwords and client secrets are hashed "
        "(Argon2id): rfc9106 (64 MiB, 3 passes, 4 lanes; about 0.2 s of CPU a sign-in) or "
        "owasp (OWASP's minimum: 19 MiB, 2 passes, 1 lane; about 0.03 s), for small hosts")
    admin_username: str = "admin"
    admin_password: str | None = None
    organization_name: str = "Corral"

    user_token_ttl_seconds: int = 3600
    client_token_ttl_seconds: int = 3600
    registration_token_ttl_seconds: int = 24 * 3600
    agent_cert_ttl_seconds: int = Field(
        default=90 * 24 * 3600, ge=60, le=10 * 365 * 24 * 3600,
        description="lifetime of an agent's certificate; agents renew at two thirds of it")
    ca_rotation_spread_seconds: float = Field(
        default=600.0, ge=0, le=30 * 24 * 3600,
        description="after `corral ca rotate`, agents renew at a random moment within this")

    max_artifact_bytes: int = 512 * 1024 * 1024
    max_group_size: int | None = None
    max_cluster_size: int | None = None

    token_cache_seconds: float = Field(
        default=5.0, ge=0, le=60,
        description="how long an authenticated token is remembered (0: looked up on every "
        "call); a change to users, apps or tokens made through this process wins at once")
    answer_cache_seconds: float = Field(
        default=2.0, ge=0, le=60,
        description="how long a rendered list or object (servers, groups, clusters, "
        "applications) may be served again while nothing under it changed; 0: rendered on "
        "every call. A change shows on the next call; `uptime` is as of the kept answer")
    answer_cache_mb: int = Field(
        default=64, ge=1, le=4096,
        description="memory for kept answers; the least recently used go first")
    heartbeat_seconds: float = Field(
        default=30.0, ge=MIN_HEARTBEAT_SECONDS, le=600,
        description="how often the gateway pings each connected agent; an agent that does not "
        "answer within as long again is disconnected (its server becomes DISCONNECTED)")
    heartbeat_timeout_seconds: float = Field(
        default=45.0, ge=1.5 * MIN_HEARTBEAT_SECONDS,
        description="a server marked RUNNING whose gateway has not vouched for it for this "
        "long becomes DISCONNECTED (the gateway that held it stopped); at least one and a "
        "half heartbeats")

    @field_validator("webhook_deny")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError: a clear settings error
        return value

    @field_validator("gateway_urls")
    @classmethod
    def _wss_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme != "wss" or not parts.hostname or parts.port is None:
                raise ValueError(f"CORRAL_GATEWAY_URLS: {url!r} is not wss://host:port")
        return urls

    @field_validator("artifact_store")
    @classmethod
    def _known_store(cls, store: str) -> str:
        if store in ("file", "database") or (store.startswith("s3://")
                                              and len(store) > len("s3://")):
            return store
        raise ValueError(f"CORRAL_ARTIFACT_STORE: {store!r} is not file, database or "
                         "s3://bucket/prefix")

    def master_key_text(self) -> str | None:
        if self.master_key is not None:
            return self.master_key.get_secret_value()
        if self.master_key_file is not None:
            return self.master_key_file.read_text()
        return None

    @model_validator(mode="after")
    def _timeout_covers_a_heartbeat(self) -> Settings:
        if self.heartbeat_timeout_seconds < 1.5 * self.heartbeat_seconds:
            raise ValueError(
                f"CORRAL_HEARTBEAT_TIMEOUT_SECONDS ({self.heartbeat_timeout_seconds:g}) must be "
                f"at least 1.5 x CORRAL_HEARTBEAT_SECONDS ({self.heartbeat_seconds:g}): "
                "healthy servers would flap between two heartbeats")
        return self

    keep_deployments: int = Field(
        default=10, ge=1, le=1000,
        description="deployments kept in each application's history (their artifacts can be "
        "rolled back to); older ones, and artifacts nothing uses, are collected")
    metrics_token: SecretStr | None = Field(
        default=None, description="a bearer token Prometheus scrapes GET /metrics with (an "
        "admin's token works too)")
    metrics_seconds: float = Field(
        default=15.0, ge=0, le=3600,
        description="how often every agent sends its measurements (0: never)")
    metrics_raw_seconds: int = Field(
        default=3600, ge=60, description="how long raw measurements are kept before they are "
        "folded into one-minute means")
    metrics_retention_seconds: int = Field(
        default=86400, ge=60, description="how long measurements are kept at all")
    metrics_per_instance: bool = Field(
        default=False, description="GET /metrics also shows each server's and each instance's "
        "CPU and memory (a series per server: mind the cardinality at 10,000 servers)")
    smtp_url: SecretStr | None = Field(
        default=None, description="where alert emails go: smtp://[user:password@]host:port "
        "(STARTTLS when offered) or smtps://...; unset: email actions wait, undelivered")
    smtp_from: str = Field(default="corral@localhost",
                           description="the From address of alert emails")
    webhook_deny: list[str] = Field(
        default_factory=lambda: list(WEBHOOK_DENY),
        description="JSON list of networks an alert's webhook may not reach, checked when the "
        "alert is saved and at each connection (default: loopback, link-local and the "
        "cloud metadata addresses); [] allows every address")
    alert_attempts: int = Field(
        default=8, ge=1, le=100,
        description="sending attempts of an alert notification before it is a dead letter")
    alert_retry_seconds: float = Field(
        default=2.0, gt=0, description="the first wait before a failed notification is sent "
        "again; it doubles each time, up to ten minutes")
    audit_retention_days: int = Field(
        default=365, ge=1, le=36500,
        description="how long audit events are kept; older ones are removed by the leader")
    max_body_bytes: int = Field(
        default=64 * 1024, description="largest request body outside the upload routes (413)"
    )
    allow_plain_http: bool = Field(
        default=False, description="serve plain HTTP on a non-loopback address (behind a proxy)"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses whose X-Forwarded-For/-Proto are believed (a TLS proxy)",
    )
    login_free_failures: int = Field(
        default=5, description="failed sign-ins per name or address before 429"
    )
    registration_rate_per_minute: int = Field(
        default=120, description="registrations per source address per minute (0: unlimited)"
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'corral.db').resolve()}"

    @property
    def gateway_url(self) -> str:
        host = self.public_hostnames[0] if self.public_hostnames else self.host
        if host in ("0.0.0.0", "::"):
            host = "localhost"
        return f"wss://{host}:{self.gateway_port}{wire.ARM_CONNECT_PATH}"

    @property
    def mcm_websocket_url(self) -> str:
        """ARM's single gateway URL in a registration: the first of several."""
        if self.gateway_urls:
            return self.gateway_urls[0].rstrip("/") + wire.ARM_CONNECT_PATH
        return self.gateway_url

    @property
    def agent_gateway_urls(self) -> list[str]:
        """What agents are handed, at registration and in every desired state."""
        return self.gateway_urls or [self.gateway_url]

    @property
    def gateway_hostnames(self) -> list[str]:
        """Every name the gateway certificate must be valid for."""
        names = [*self.public_hostnames, self.host]
        for url in [*self.gateway_urls, *([self.replica_url] if self.replica_url else [])]:
            host = urlsplit(url).hostname
            if host:
                names.append(host)
        return list(dict.fromkeys(names))

    @property
    def own_gateway_base(self) -> str:
        """wss://host:port of this replica's gateway, for the other replicas."""
        if self.replica_url:
            return self.replica_url.rstrip("/")
        return self.gateway_url.removesuffix(wire.ARM_CONNECT_PATH)

    @property
    def api_url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
        return f"{'https' if self.api_tls else 'http'}://{host}:{self.port}"
