"""Settings from ``EHRCA_*`` environment variables (pydantic-settings).

Embedded defaults (development): SQLite at ``var/ehrca.db``, keys in ``keys/``,
mail into the Maildir ``var/outbox/``, documents in ``var/documents/``; paths are
relative to the working directory. ``EHRCA_ENVIRONMENT=production`` refuses the
unsafe ones (SQLite, a generated key passphrase file, plain-HTTP public URL on a
non-loopback host is allowed on purpose: CRL/AIA URLs must be plain HTTP).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ca.config import CAConfig, PkiUrls
from ca.keys import ISSUING_KEY_TYPES, ROOT_KEY_TYPES, KeyType

GENERATED_PASSPHRASE_FILE = "passphrase.generated"  # noqa: S105 - a file name


class SettingsError(Exception):
    """Settings are unusable (missing passphrase, unsafe default in production)."""


class Settings(BaseSettings):
    """All ehrca settings; each field ``name`` is read from ``EHRCA_NAME``."""

    model_config = SettingsConfigDict(env_prefix="EHRCA_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    var_dir: Path = Path("var")
    keys_dir: Path = Path("keys")
    database_url: str | None = None
    key_passphrase: SecretStr | None = None
    key_passphrase_file: Path | None = None
    root_key_type: KeyType = KeyType.EC_P384
    issuing_key_type: KeyType = KeyType.EC_P256
    organization: str = "eHR Secure Connection"
    public_base_url: str = "http://127.0.0.1:8000"
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=1, le=65535)
    mtls_host: str = "127.0.0.1"
    mtls_port: int = Field(8443, ge=1, le=65535)
    mtls_server_names: list[str] = ["localhost", "127.0.0.1"]
    smtp_url: str | None = None
    #: PEM file of the CA(s) that sign the SMTP server's certificate (default: the
    #: system trust store), e.g. for a relay with a private CA.
    smtp_ca_file: Path | None = None
    mail_from: str = "eHR Secure Connection <no-reply@ehrca.invalid>"
    client_validity_days: int = Field(730, ge=1, le=3650)
    root_validity_days: int = Field(7300, ge=1, le=36500)
    issuing_validity_days: int = Field(3650, ge=1, le=36500)
    server_validity_days: int = Field(397, ge=1, le=3650)
    renewal_window_days: int = Field(30, ge=1, le=365)
    crl_validity_hours: int = Field(24, ge=1, le=24 * 30)
    crl_refresh_seconds: int = Field(3600, ge=10, le=30 * 86400)
    crl_keep_expired_days: int = Field(0, ge=0, le=3650)
    crl_shards: int = Field(1, ge=1, le=1024)
    ocsp_validity_hours: int = Field(24, ge=1, le=24 * 7)
    ocsp_responder_validity_days: int = Field(7, ge=2, le=90)
    download_code_validity_days: int = Field(60, ge=1, le=365)
    token_lifetime_seconds: int = Field(8 * 3600, ge=60, le=30 * 86400)
    max_document_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_documents: int = Field(20, ge=1)
    #: Seconds between two database polls of each ``ehrca serve`` worker for other
    #: workers' revocations and CRLs: the fallback behind ``worker_notify``.
    status_poll_seconds: float = Field(0.5, gt=0, le=3600)
    #: Sibling workers on this host wake each other on a revocation or CRL publication
    #: over Unix datagram sockets in ``var/run/notify`` (api/notify.py); off: poll only.
    worker_notify: bool = True
    lint_before_signing: bool = True
    certificate_policy_oid: str = "1.3.6.1.4.1.32473.1.1"
    identity_base_uri: str = "https://id.ehrca.example"
    identity_key_file: Path | None = None  # HMAC key of people's identity keys (api/routes/staff)

    @field_validator("root_key_type")
    @classmethod
    def _root_key(cls, value: KeyType) -> KeyType:
        if value not in ROOT_KEY_TYPES:
            raise ValueError(f"root key type must be one of {sorted(ROOT_KEY_TYPES)}")
        return value

    @field_validator("issuing_key_type")
    @classmethod
    def _issuing_key(cls, value: KeyType) -> KeyType:
        if value not in ISSUING_KEY_TYPES:
            raise ValueError(f"issuing key type must be one of {sorted(ISSUING_KEY_TYPES)}")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith("http://"):
            raise ValueError("public_base_url must be plain http:// (RFC 5280 8: CRL and AIA)")
        return value.rstrip("/")

    @property
    def resolved_database_url(self) -> str:
        """``database_url`` or the embedded SQLite file ``var/ehrca.db``."""
        return self.database_url or f"sqlite:///{self.var_dir / 'ehrca.db'}"

    @property
    def outbox_dir(self) -> Path:
        """Maildir that receives mail when no SMTP URL is set."""
        return self.var_dir / "outbox"

    @property
    def documents_dir(self) -> Path:
        """Content-addressed store of uploaded documents."""
        return self.var_dir / "documents"

    def ca_config(self) -> CAConfig:
        """The :class:`ca.config.CAConfig` these settings describe."""
        return CAConfig(
            urls=PkiUrls(self.public_base_url),
            organization=self.organization,
            root_key_type=self.root_key_type,
            issuing_key_type=self.issuing_key_type,
            client_validity=dt.timedelta(days=self.client_validity_days),
            root_validity=dt.timedelta(days=self.root_validity_days),
            issuing_validity=dt.timedelta(days=self.issuing_validity_days),
            server_validity=dt.timedelta(days=self.server_validity_days),
            server_names=tuple(self.mtls_server_names),
            crl_validity=dt.timedelta(hours=self.crl_validity_hours),
            certificate_policy_oid=self.certificate_policy_oid,
            identity_base_uri=self.identity_base_uri.rstrip("/"),
            crl_shards=self.crl_shards,
            ocsp_responder_validity=dt.timedelta(days=self.ocsp_responder_validity_days),
        )

    def check_production(self) -> None:
        """Refuse the embedded defaults when ``environment`` is production.

        Raises:
            SettingsError: SQLite database or no explicit key passphrase in production.
        """
        if self.environment != "production":
            return
        if self.resolved_database_url.startswith("sqlite"):
            raise SettingsError("production needs EHRCA_DATABASE_URL (PostgreSQL), not SQLite")
        if self.key_passphrase is None and self.key_passphrase_file is None:
            raise SettingsError(
                "production needs EHRCA_KEY_PASSPHRASE or EHRCA_KEY_PASSPHRASE_FILE"
            )

    def key_passphrase_bytes(self, *, create: bool = False) -> bytes:
        """The key store passphrase.

        Order: ``EHRCA_KEY_PASSPHRASE``, ``EHRCA_KEY_PASSPHRASE_FILE``, then (development
        only) ``keys/passphrase.generated``, which ``create=True`` makes with 256 random
        bits, mode 0600, printing a warning to stderr.

        Raises:
            SettingsError: no passphrase can be found (or made).
        """
        if self.key_passphrase is not None:
            value = self.key_passphrase.get_secret_value().encode()
            if not value:
                raise SettingsError("EHRCA_KEY_PASSPHRASE is empty")
            return value
        if self.key_passphrase_file is not None:
            try:
                value = self.key_passphrase_file.read_bytes().strip()
            except OSError as exc:
                raise SettingsError(f"cannot read EHRCA_KEY_PASSPHRASE_FILE: {exc}") from exc
            if not value:
                raise SettingsError("EHRCA_KEY_PASSPHRASE_FILE is empty")
            return value
        if self.environment == "production":
            raise SettingsError("set EHRCA_KEY_PASSPHRASE or EHRCA_KEY_PASSPHRASE_FILE")
        generated = self.keys_dir / GENERATED_PASSPHRASE_FILE
        if generated.exists():
            return generated.read_bytes().strip()
        if not create:
            raise SettingsError(
                f"no key passphrase: set EHRCA_KEY_PASSPHRASE(_FILE) or run `ehrca init` "
                f"(it generates {generated} for development)"
            )
        self.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32).encode()
        fd = os.open(generated, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(value + b"\n")
        print(
            f"WARNING: generated a random key passphrase in {generated} (development only); "
            "set EHRCA_KEY_PASSPHRASE or EHRCA_KEY_PASSPHRASE_FILE for real keys",
            file=sys.stderr,
        )
        return value
