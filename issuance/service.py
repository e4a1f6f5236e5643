"""Collection of a service location's certificate: by CSR, or with a key made here.

Registration hands issuance an :class:`ApprovedLocation` (never the reverse, see
DESIGN.md); issuance checks the download code, applies the CSR policy or makes the
key, and runs the CA pipeline (``ca.service.issue_certificate``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.config import CAConfig
from ca.errors import ErrorCategory
from ca.keys import KeyStore, KeyType, generate_private_key
from ca.models import CARole, CertificateRecord, CertificateStatus
from ca.profiles import client_profile, client_subject
from ca.service import Linter, Signer, issue_certificate, load_signer
from issuance.codes import claim_download_code
from issuance.csr import check_csr
from issuance.errors import IssuanceError
from issuance.pkcs12 import PKCS12Profile, check_pkcs12_password, serialize_pkcs12

#: Keys the service may generate for a PKCS#12 download.
GENERATED_KEY_TYPES = frozenset({KeyType.EC_P256, KeyType.RSA_2048, KeyType.RSA_3072})


class IdempotencyConflict(IssuanceError):
    """An ``Idempotency-Key`` was reused for a different request, or for a PKCS#12
    download (whose key was never stored, so it cannot be returned twice)."""

    code = "idempotency_key_reused"
    category = ErrorCategory.CONFLICT


@dataclass(frozen=True, slots=True)
class ApprovedLocation:
    """A service location of an approved application, as registration hands it over.

    Attributes:
        service_location_id: database id (stored with the certificate).
        number: the location's ``id`` in the API (1, 2, ...).
    """

    provider_reference: str
    service_location_id: int
    number: int
    provider_name_en: str
    provider_name_zh: str | None
    location_name_en: str
    location_name_zh: str | None

    @property
    def identifier(self) -> str:
        """The CN of its certificate, e.g. ``HCP-7K3Q9M2T-L1``."""
        return f"{self.provider_reference}-L{self.number}"

    def uri(self, identity_base_uri: str) -> str:
        """The URI subjectAltName naming provider and location (see ``CAConfig``)."""
        return f"{identity_base_uri}/hcp/{self.provider_reference}/sl/{self.number}"


@dataclass(frozen=True, slots=True)
class IssuanceContext:
    """What ``api/`` wires in: key store, CA configuration, optional pre-sign linter."""

    keystore: KeyStore
    config: CAConfig
    linter: Linter | None = None


@dataclass(frozen=True, slots=True)
class CollectedCertificate:
    """Result of a collection.

    Attributes:
        chain: issuing CA then root certificate.
        ignored: what the CSR asked for that was ignored (empty for PKCS#12).
        pkcs12: the DER PFX for the generated-key path, else ``None``.
        replayed: true when an ``Idempotency-Key`` returned an earlier certificate.
    """

    record: CertificateRecord
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    ignored: tuple[str, ...] = ()
    pkcs12: bytes | None = None
    replayed: bool = False


def _chain(session: Session, signer: Signer) -> tuple[x509.Certificate, ...]:
    root = load_signer_certificate(session, CARole.ROOT)
    return (signer.certificate, root)


def load_signer_certificate(session: Session, role: CARole) -> x509.Certificate:
    """The certificate of the active authority of ``role`` (no key loaded)."""
    from ca.service import get_authority

    return x509.load_der_x509_certificate(get_authority(session, role).certificate_der)


def _scoped_key(location: ApprovedLocation, idempotency_key: str | None) -> str | None:
    if idempotency_key is None:
        return None
    return f"{location.provider_reference}:{location.number}:{idempotency_key}"[:128]


def _replay(
    session: Session, ctx: IssuanceContext, scoped_key: str | None
) -> CollectedCertificate | None:
    if scoped_key is None:
        return None
    record = session.scalars(
        select(CertificateRecord).where(CertificateRecord.idempotency_key == scoped_key)
    ).first()
    if record is None:
        return None
    if record.key_generated_by_ca or record.certificate_der is None:
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a PKCS#12 download or an unfinished request; "
            "a generated key is never stored, so use a new key and a new download code"
        )
    signer = load_signer(session, ctx.keystore)
    return CollectedCertificate(
        record=record,
        certificate=x509.load_der_x509_certificate(record.certificate_der),
        chain=_chain(session, signer),
        replayed=True,
    )


def _issue(
    session: Session,
    ctx: IssuanceContext,
    location: ApprovedLocation,
    *,
    download_code: str,
    public_key: object,
    now: dt.datetime,
    key_generated_by_ca: bool,
    scoped_key: str | None,
) -> tuple[CertificateRecord, x509.Certificate, tuple[x509.Certificate, ...]]:
    signer = load_signer(session, ctx.keystore)
    subject = client_subject(
        provider_name_en=location.provider_name_en,
        provider_name_zh=location.provider_name_zh,
        location_name_en=location.location_name_en,
        location_name_zh=location.location_name_zh,
        location_identifier=location.identifier,
    )
    code_row = claim_download_code(session, location.service_location_id, download_code, now=now)
    try:
        record, certificate = issue_certificate(
            session,
            signer,
            client_profile(
                ctx.config.client_validity, policy_oid=ctx.config.certificate_policy_oid
            ),
            subject=subject,
            public_key=public_key,  # type: ignore[arg-type]
            now=now,
            config=ctx.config,
            subject_alt_names=(location.uri(ctx.config.identity_base_uri),),
            provider_reference=location.provider_reference,
            service_location_id=location.service_location_id,
            key_generated_by_ca=key_generated_by_ca,
            idempotency_key=scoped_key,
            linter=ctx.linter,
        )
    except BaseException:
        session.rollback()  # gives the download code back unless the reservation committed
        raise
    code_row.certificate_id = record.id
    record_event(
        session,
        "certificate.issued",
        actor=location.provider_reference,
        now=now,
        subject=record.serial_number,
        details={
            "profile": record.profile,
            "service_location": location.number,
            "key_generated_by_ca": key_generated_by_ca,
            "subject_dn": record.subject,
        },
    )
    if key_generated_by_ca:
        record_event(
            session,
            "certificate.pkcs12_delivered",
            actor=location.provider_reference,
            now=now,
            subject=record.serial_number,
        )
    session.commit()
    return record, certificate, _chain(session, signer)


def collect_with_csr(
    session: Session,
    ctx: IssuanceContext,
    location: ApprovedLocation,
    *,
    download_code: str,
    csr: bytes,
    now: dt.datetime,
    idempotency_key: str | None = None,
) -> CollectedCertificate:
    """Issue the location's certificate for the key in ``csr`` (PEM or DER PKCS#10).

    Raises:
        issuance.errors.CSRMalformed, CSRSignatureInvalid, CSRKeyRejected: CSR checks.
        issuance.errors.DownloadCodeInvalid, DownloadCodeUsed, DownloadCodeExpired.
        IdempotencyConflict: see the class.
        ca.service.LintRefused: the built certificate failed linting.
    """
    scoped = _scoped_key(location, idempotency_key)
    replay = _replay(session, ctx, scoped)
    if replay is not None:
        return replay
    checked = check_csr(csr)
    record, certificate, chain = _issue(
        session,
        ctx,
        location,
        download_code=download_code,
        public_key=checked.public_key,
        now=now,
        key_generated_by_ca=False,
        scoped_key=scoped,
    )
    return CollectedCertificate(record, certificate, chain, ignored=checked.ignored)


def collect_with_generated_key(
    session: Session,
    ctx: IssuanceContext,
    location: ApprovedLocation,
    *,
    download_code: str,
    password: str,
    profile: PKCS12Profile,
    now: dt.datetime,
    key_type: KeyType = KeyType.EC_P256,
    idempotency_key: str | None = None,
) -> CollectedCertificate:
    """Generate a key, issue the certificate and return both as PKCS#12.

    The key exists only in memory and in the returned PKCS#12 bytes; it is never
    stored or logged.

    Raises:
        issuance.errors.PKCS12PasswordRejected: checked before anything else.
        ValueError: ``key_type`` not in :data:`GENERATED_KEY_TYPES`.
        The download-code errors of :func:`collect_with_csr`.
    """
    check_pkcs12_password(password)
    if key_type not in GENERATED_KEY_TYPES:
        raise ValueError(f"key_type must be one of {sorted(GENERATED_KEY_TYPES)}")
    scoped = _scoped_key(location, idempotency_key)
    _replay(session, ctx, scoped)  # raises: a generated key cannot be replayed
    key = generate_private_key(key_type)
    record, certificate, chain = _issue(
        session,
        ctx,
        location,
        download_code=download_code,
        public_key=key.public_key(),
        now=now,
        key_generated_by_ca=True,
        scoped_key=scoped,
    )
    blob = serialize_pkcs12(
        friendly_name=location.location_name_en,
        private_key=key,
        certificate=certificate,
        ca_certificates=list(chain),
        password=password,
        profile=profile,
    )
    return CollectedCertificate(record, certificate, chain, pkcs12=blob)


def find_certificate(session: Session, serial_hex: str) -> CertificateRecord | None:
    """The issued or revoked certificate with ``serial_hex`` from any issuer, or ``None``."""
    return session.scalars(
        select(CertificateRecord).where(
            CertificateRecord.serial_number == serial_hex,
            CertificateRecord.status != CertificateStatus.RESERVED,
        )
    ).first()
