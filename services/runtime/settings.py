"""Settings from the environment, validated at start with an error naming the bad setting."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

ENV_PREFIX = "NRM_"


class SettingsError(ValueError):
    pass


def nats_servers(url: str) -> list[str]:
    """A NATS URL may list several servers of one cluster, comma-separated."""
    return [part.strip() for part in url.split(",") if part.strip()]


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    nats_url: str | None = Field(default=None, description="NRM_NATS_URL; None = embedded hub")
    country: str = Field(default="kg", pattern=r"^[a-z]{2}$", description="NRM_COUNTRY")
    lang: str = Field(
        default="en",
        pattern=r"^(en|ru|ky)$",
        description="NRM_LANG: language of the statistics for people (en, ru, ky)",
    )
    data_dir: Path = Field(default=Path("var"), description="NRM_DATA_DIR: embedded state, keys")
    agency_registry: Path | None = Field(
        default=None, description="NRM_AGENCY_REGISTRY: registry file; None = the packaged one"
    )
    kek_file: Path | None = Field(
        default=None, description="NRM_KEK_FILE: key-encryption key; None = DATA_DIR/keys/kek"
    )
    intake_key_file: Path | None = Field(
        default=None,
        description="NRM_INTAKE_KEY_FILE: X25519 key agencies seal personal data to; "
        "None = DATA_DIR/keys/intake.pem",
    )
    blind_index_key_file: Path | None = Field(
        default=None,
        description="NRM_BLIND_INDEX_KEY_FILE: duplicate-detection HMAC key; "
        "None = DATA_DIR/keys/blind-index",
    )
    referral_response_seconds: float = Field(
        default=72 * 3600, gt=0, description="NRM_REFERRAL_RESPONSE_SECONDS before escalation"
    )
    identification_decision_days: int = Field(
        default=30,
        ge=1,
        le=365,
        description="NRM_IDENTIFICATION_DECISION_DAYS: a presumed victim's identification is "
        "due this many days after the presumption",
    )
    waitlist_escalation_seconds: float = Field(
        default=14 * 86400,
        gt=0,
        description="NRM_WAITLIST_ESCALATION_SECONDS a referral may wait on a waiting list "
        "before it is escalated to the coordinating body",
    )
    deadline_sweep_seconds: float = Field(
        default=30.0, gt=0, description="NRM_DEADLINE_SWEEP_SECONDS between escalation sweeps"
    )
    replicas: int = Field(
        default=1, ge=1, le=5, description="NRM_REPLICAS: copies of each stream (3 in a cluster)"
    )
    max_deliver: int = Field(default=5, ge=1, le=100, description="NRM_MAX_DELIVER attempts")
    retry_backoff_seconds: tuple[float, ...] = Field(
        default=(0.5, 2.0, 10.0, 30.0), min_length=1, description="NRM_RETRY_BACKOFF_SECONDS"
    )
    # A secured hub (deploy/nats/): TLS with a client certificate that names the NATS user.
    nats_tls_ca: Path | None = Field(default=None, description="NRM_NATS_TLS_CA: CA (PEM)")
    nats_tls_cert: Path | None = Field(
        default=None, description="NRM_NATS_TLS_CERT: this process's client certificate (PEM)"
    )
    nats_tls_key: Path | None = Field(
        default=None,
        validate_default=True,
        description="NRM_NATS_TLS_KEY: the client certificate's private key (PEM)",
    )
    # A hub with NATS nkey users (`nrm up`'s default): one seed file per role, `<role>.nk`.
    nats_credentials: Path | None = Field(
        default=None,
        description="NRM_NATS_CREDENTIALS: directory of nkey seeds, one `<role>.nk` per NATS "
        "user; None = DATA_DIR/credentials when using the local hub `nrm up` started",
    )
    health_port: int = Field(
        default=0, ge=0, le=65535, description="NRM_HEALTH_PORT: /livez /readyz /metrics; 0 = off"
    )
    health_host: str = Field(default="127.0.0.1", description="NRM_HEALTH_HOST: bind address")
    # The HTTPS gateway for agencies without NATS (docs/GATEWAY.md): mutual TLS only.
    gateway_host: str = Field(default="127.0.0.1", description="NRM_GATEWAY_HOST: bind address")
    gateway_port: int = Field(
        default=8443, ge=0, le=65535, description="NRM_GATEWAY_PORT: HTTPS port; 0 = a free one"
    )
    gateway_tls_cert: Path | None = Field(
        default=None,
        description="NRM_GATEWAY_TLS_CERT: the gateway's server certificate (PEM); "
        "`nrm up` starts the gateway only when it is set",
    )
    gateway_tls_key: Path | None = Field(
        default=None, description="NRM_GATEWAY_TLS_KEY: its private key (PEM)"
    )
    gateway_tls_ca: Path | None = Field(
        default=None,
        description="NRM_GATEWAY_TLS_CA: the CA that issues agencies' client certificates (PEM)",
    )
    gateway_agency_certs: Path | None = Field(
        default=None,
        description="NRM_GATEWAY_AGENCY_CERTS: on a hub whose agencies sign in to NATS with "
        "client certificates, a directory of `<agency>.pem` and `<agency>-key.pem` the gateway "
        "connects with; None = the agencies' nkey seeds in NRM_NATS_CREDENTIALS",
    )

    @field_validator(
        "nats_tls_ca",
        "nats_tls_cert",
        "nats_tls_key",
        "gateway_tls_cert",
        "gateway_tls_key",
        "gateway_tls_ca",
    )
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("nats_tls_key")
    @classmethod
    def _cert_and_key_together(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("nats_tls_cert") is None) and (
            "nats_tls_cert" in info.data
        ):
            raise ValueError("give both NRM_NATS_TLS_CERT and NRM_NATS_TLS_KEY, or neither")
        return value

    @field_validator("gateway_agency_certs")
    @classmethod
    def _directory(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"no such directory: {value}")
        return value

    @field_validator("health_host", "gateway_host")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        ipaddress.ip_address(value)  # ValueError names it: "does not appear to be an IPv4..."
        return value

    audit_signing_key_file: Path | None = Field(
        default=None,
        description="NRM_AUDIT_SIGNING_KEY_FILE: Ed25519 key; None = DATA_DIR/keys/audit-signing",
    )
    attestation_signing_key_file: Path | None = Field(
        default=None,
        description="NRM_ATTESTATION_SIGNING_KEY_FILE: Ed25519 seed that signs victim-status "
        "attestations and their status list; None = DATA_DIR/keys/attestation-signing",
    )
    checkpoint_interval_seconds: float = Field(
        default=60.0, gt=0, description="NRM_CHECKPOINT_INTERVAL_SECONDS between audit checkpoints"
    )
    workers: int = Field(
        default=0,
        ge=0,
        le=256,
        description="NRM_WORKERS: processes `nrm up` runs the services in; 0 = one per core, "
        "1 = all in the `nrm up` process",
    )

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str | None) -> str | None:
        if value is not None and not all(
            server.startswith(("nats://", "tls://")) for server in nats_servers(value)
        ):
            raise ValueError("each server must start with nats:// or tls://")
        return value

    @property
    def authenticated(self) -> bool:
        """Whether this process proves who it is to NATS (client certificate or nkey): on
        such a hub every agency is authenticated, and the open command subjects are refused."""
        return self.nats_tls_cert is not None or self.nats_credentials is not None

    @property
    def key_encryption_key_file(self) -> Path:
        return self.kek_file or self.data_dir / "keys" / "kek"

    @property
    def intake_private_key_file(self) -> Path:
        return self.intake_key_file or self.data_dir / "keys" / "intake.pem"

    @property
    def blind_index_secret_file(self) -> Path:
        return self.blind_index_key_file or self.data_dir / "keys" / "blind-index"

    @property
    def audit_signing_key(self) -> Path:
        return self.audit_signing_key_file or self.data_dir / "keys" / "audit-signing"

    @property
    def attestation_signing_key(self) -> Path:
        return self.attestation_signing_key_file or self.data_dir / "keys" / "attestation-signing"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            is_tuple = "tuple" in str(field.annotation)
            values[name] = tuple(part for part in raw.split(",") if part) if is_tuple else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc'][:1]).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise SettingsError(f"invalid setting: {problems}") from None


def settings_environment(settings: Settings) -> dict[str, str]:
    """The NRM_* variables `Settings.from_env` reads back as exactly these settings: how a
    process hands its settings (command-line overrides included) to the processes it starts."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        text = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
        env[ENV_PREFIX + name.upper()] = text
    return env
