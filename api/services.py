"""The wiring: settings → engine, sessions, key store, CA config, mailer, caches.

``api/`` builds one :class:`Services` per process and hands each domain function
only what it needs (DESIGN.md: domain packages never read settings).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings
from ca import lint
from ca.config import CAConfig
from ca.keys import FileKeyStore
from ca.service import Clock, utc_now
from db.session import create_db_engine, create_session_factory
from issuance.mail import MaildirMailer, Mailer, SmtpMailer, deliver_pending
from issuance.service import IssuanceContext
from registration.service import ApprovalContext, DocumentLimits
from revocation.ocsp_cache import OCSPMemoryCache
from revocation.responder import OCSPPolicy
from revocation.service import CRLPolicy, RevocationContext, publish_crls_with_policy
from revocation.status import RevocationStatusCache

log = logging.getLogger("ehrca")


@dataclass
class Services:
    """Everything a request handler or background task needs, built once per process.

    Attributes:
        crl_listeners: callables run after a CRL is published (the mTLS listener
            registers one that swaps in a fresh SSL context).
        ocsp_cache: pre-signed OCSP responses in memory, evicted on every revocation
            :attr:`revocation_status` learns of (``revocation.ocsp_cache``).
        revocation_status_current: returns True while :attr:`revocation_status` is
            known to follow the database (the mTLS listener's sync polls successfully,
            ``api.server.ListenerSync.is_current``); then ``/mtls/whoami`` skips the
            per-request status query. Default: never (the row is always read).
    """

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keystore: FileKeyStore
    ca_config: CAConfig
    issuance: IssuanceContext
    mailer: Mailer
    revocation_status: RevocationStatusCache
    clock: Clock = utc_now
    crl_listeners: list[Callable[[], None]] = field(default_factory=list)
    ocsp_cache: OCSPMemoryCache = field(default_factory=OCSPMemoryCache)
    revocation_status_current: Callable[[], bool] = field(default=lambda: False)

    def __post_init__(self) -> None:
        self.ocsp_cache.follow(self.revocation_status)

    @property
    def approval(self) -> ApprovalContext:
        """Download-code lifetime and base URL for approval mails."""
        return ApprovalContext(
            download_code_validity=dt.timedelta(days=self.settings.download_code_validity_days),
            base_url=self.settings.public_base_url,
        )

    @property
    def document_limits(self) -> DocumentLimits:
        """Upload limits from settings."""
        return DocumentLimits(self.settings.max_document_bytes, self.settings.max_documents)

    def deliver_mail(self) -> tuple[int, int]:
        """Send pending outbox mail now; returns ``(sent, failed)``. Never raises for
        delivery failures (they stay in the outbox for the next try)."""
        return deliver_pending(
            self.sessions, self.mailer, sender=self.settings.mail_from, now=self.clock()
        )

    @property
    def crl_policy(self) -> CRLPolicy:
        """CRL validity, refresh, expired-entry grace and partitions from settings."""
        return CRLPolicy(
            validity=self.ca_config.crl_validity,
            urls=self.ca_config.urls,
            keep_expired=dt.timedelta(days=self.settings.crl_keep_expired_days),
            shards=self.settings.crl_shards,
            refresh=dt.timedelta(seconds=self.settings.crl_refresh_seconds),
        )

    @property
    def ocsp_policy(self) -> OCSPPolicy:
        """OCSP response validity and responder certificates from settings."""
        return OCSPPolicy(
            response_validity=dt.timedelta(hours=self.settings.ocsp_validity_hours),
            ca_config=self.ca_config,
            linter=self.issuance.linter,
        )

    @property
    def revocation(self) -> RevocationContext:
        """What ``revocation.service`` use cases need: keys, CRL and OCSP policies, this
        process's revocation status, and :meth:`notify_crl_published`."""
        return RevocationContext(
            keystore=self.keystore,
            crl=self.crl_policy,
            ocsp=self.ocsp_policy,
            status=self.revocation_status,
            on_crl_published=self.notify_crl_published,
        )

    def publish_crls(self) -> None:
        """Publish fresh CRLs for every authority and notify :attr:`crl_listeners`."""
        with self.sessions() as session:
            publish_crls_with_policy(session, self.keystore, self.crl_policy, now=self.clock())
        self.notify_crl_published()

    def notify_crl_published(self) -> None:
        """Run every CRL listener; a failing listener is logged, never raised."""
        for listener in self.crl_listeners:
            try:
                listener()
            except Exception:  # a listener must not undo a committed publication
                log.exception("CRL listener failed")

    def dispose(self) -> None:
        """Close database connections."""
        self.engine.dispose()


def _linter(der: bytes) -> None:
    lint.check_certificate(der)


def build_services(settings: Settings, *, clock: Clock = utc_now) -> Services:
    """Build the :class:`Services` for ``settings``.

    Raises:
        api.settings.SettingsError: unsafe production settings or no key passphrase.
    """
    settings.check_production()
    engine = create_db_engine(settings.resolved_database_url)
    keystore = FileKeyStore(settings.keys_dir, settings.key_passphrase_bytes())
    ca_config = settings.ca_config()
    mailer: Mailer = (
        SmtpMailer(
            settings.smtp_url,
            tls_context=ssl.create_default_context(cafile=settings.smtp_ca_file)
            if settings.smtp_ca_file
            else None,
        )
        if settings.smtp_url
        else MaildirMailer(settings.outbox_dir)
    )
    return Services(
        settings=settings,
        engine=engine,
        sessions=create_session_factory(engine),
        keystore=keystore,
        ca_config=ca_config,
        issuance=IssuanceContext(
            keystore, ca_config, _linter if settings.lint_before_signing else None
        ),
        mailer=mailer,
        revocation_status=RevocationStatusCache(),
        clock=clock,
    )
