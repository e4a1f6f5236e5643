"""CA use cases over the database and the key store: initialise the hierarchy, issue.

Issuance pipeline (Boulder's ``ca/``, step-ca's ``authority/tls.go``):
build → sign with a throwaway key of the same type → lint → record intent
(serial + to-be-signed certificate, committed) → sign for real → check the signed
TBS equals the recorded one → store. With ECDSA and RSA PKCS#1 v1.5 the TBS does not
depend on the signing key (the signature algorithm OID is the same), so the linted
certificate and the real one differ only in their signature.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.config import CAConfig
from ca.errors import DomainError, ErrorCategory
from ca.keys import KeyStore, KeyType, PrivateKey, PublicKey
from ca.models import CARole, CertificateAuthority, CertificateRecord, CertificateStatus
from ca.profiles import (
    Issuer,
    Profile,
    build_certificate,
    ca_subject,
    issuing_ca_profile,
    root_profile,
    server_profile,
    sign_certificate,
)
from ca.serials import generate_serial_number, serial_to_hex

Clock = Callable[[], dt.datetime]

ROOT_CA_NAME = "ehrca-root-1"
ISSUING_CA_NAME = "ehrca-issuing-1"
MTLS_SERVER_KEY_NAME = "mtls-server"


def utc_now() -> dt.datetime:
    """The default clock: aware UTC now."""
    return dt.datetime.now(dt.UTC)


class CAError(DomainError):
    """Base of CA failures."""

    code = "ca_error"
    category = ErrorCategory.CONFLICT


class CAAlreadyInitialised(CAError):
    """``init`` found an existing CA (database rows or key files) and refuses to overwrite."""

    code = "ca_already_initialised"


class CANotInitialised(CAError):
    """No active authority of the requested role exists; run ``ehrca init``."""

    code = "ca_not_initialised"
    category = ErrorCategory.UNAVAILABLE


class LintRefused(CAError):
    """The certificate built for signing failed linting; nothing was signed."""

    code = "certificate_lint_failed"
    category = ErrorCategory.INVALID

    def __init__(self, message: str, findings: tuple[str, ...]) -> None:
        super().__init__(message, findings=list(findings))
        self.findings = findings


class Linter(Protocol):
    """Checks a DER certificate before the real signature; raises ``ValueError`` to refuse."""

    def __call__(self, der: bytes, /) -> None: ...


_throwaway_keys: dict[tuple[str, int], PrivateKey] = {}


def _throwaway_key_like(key: PrivateKey) -> PrivateKey:
    """A process-wide throwaway key with the same algorithm and size as ``key``."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        slot = ("ec", key.curve.key_size)
        if slot not in _throwaway_keys:
            _throwaway_keys[slot] = ec.generate_private_key(type(key.curve)())
    else:
        slot = ("rsa", key.key_size)
        if slot not in _throwaway_keys:
            _throwaway_keys[slot] = rsa.generate_private_key(65537, key.key_size)
    return _throwaway_keys[slot]


@dataclass(frozen=True, slots=True)
class Signer:
    """An authority ready to sign: its row, parsed certificate and private key."""

    authority: CertificateAuthority
    certificate: x509.Certificate
    key: PrivateKey

    @property
    def issuer(self) -> Issuer:
        """The :class:`ca.profiles.Issuer` view used by builders."""
        return Issuer(self.certificate, self.authority.name)


def get_authority(session: Session, role: CARole = CARole.ISSUING) -> CertificateAuthority:
    """Return the active authority of ``role``.

    Raises:
        CANotInitialised: when there is none.
    """
    row = session.scalars(
        select(CertificateAuthority)
        .where(CertificateAuthority.role == role, CertificateAuthority.active.is_(True))
        .order_by(CertificateAuthority.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise CANotInitialised("the CA is not initialised; run `ehrca init`")
    return row


def load_signer(session: Session, keystore: KeyStore, role: CARole = CARole.ISSUING) -> Signer:
    """Return the active authority of ``role`` with its certificate and key loaded."""
    row = get_authority(session, role)
    return Signer(
        row, x509.load_der_x509_certificate(row.certificate_der), keystore.load_key(row.key_ref)
    )


def _ski(certificate: x509.Certificate) -> bytes:
    return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def issue_certificate(
    session: Session,
    signer: Signer,
    profile: Profile,
    *,
    subject: x509.Name,
    public_key: PublicKey,
    now: dt.datetime,
    config: CAConfig,
    subject_alt_names: tuple[str, ...] = (),
    provider_reference: str | None = None,
    service_location_id: int | None = None,
    key_generated_by_ca: bool = False,
    idempotency_key: str | None = None,
    linter: Linter | None = None,
) -> tuple[CertificateRecord, x509.Certificate]:
    """Issue one certificate through the full pipeline (see the module docstring).

    The reserved row is committed before the real signature, and the issued row is
    committed after it: on return the certificate is durable.

    Args:
        session: this function commits it twice: the reservation (with anything the
            caller staged before, such as a claimed download code), then the result.
        signer: the issuing authority (from :func:`load_signer`).
        linter: called with the throwaway-signed DER; raising ``ValueError`` refuses.

    Returns:
        ``(record, certificate)``.

    Raises:
        LintRefused: the linter refused the certificate (nothing reserved or signed).
        ValueError: from the builder (issuer expired, bad names).
    """
    serial_number = generate_serial_number()
    builder = build_certificate(
        profile,
        subject=subject,
        public_key=public_key,
        serial_number=serial_number,
        not_valid_before=now,
        issuer=signer.issuer,
        urls=config.urls,
        subject_alt_names=subject_alt_names,
    )
    lint_certificate = sign_certificate(builder, _throwaway_key_like(signer.key))
    if linter is not None:
        try:
            linter(lint_certificate.public_bytes(serialization.Encoding.DER))
        except ValueError as exc:
            findings = tuple(str(f) for f in getattr(exc, "findings", ()))
            raise LintRefused(f"certificate refused by the linter: {exc}", findings) from exc
    record = CertificateRecord(
        issuer_id=signer.authority.id,
        serial_number=serial_to_hex(serial_number),
        status=CertificateStatus.RESERVED,
        profile=profile.name,
        subject=subject.rfc4514_string(),
        tbs_certificate_der=lint_certificate.tbs_certificate_bytes,
        not_valid_before=lint_certificate.not_valid_before_utc,
        not_valid_after=lint_certificate.not_valid_after_utc,
        provider_reference=provider_reference,
        service_location_id=service_location_id,
        key_generated_by_ca=key_generated_by_ca,
        idempotency_key=idempotency_key,
        created_at=now,
    )
    session.add(record)
    try:
        # Commits the reservation together with whatever the caller staged (e.g. the
        # claimed download code): intent is durable before the real signature.
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise CAError(
            "could not reserve the serial number (duplicate serial or idempotency key)",
            code="serial_reservation_failed",
        ) from exc
    certificate = sign_certificate(builder, signer.key)
    if certificate.tbs_certificate_bytes != record.tbs_certificate_der:
        raise CAError("signed certificate differs from the recorded to-be-signed certificate")
    record.certificate_der = certificate.public_bytes(serialization.Encoding.DER)
    record.status = CertificateStatus.ISSUED
    record.issued_at = now
    session.commit()
    return record, certificate


def ca_exists(session: Session) -> bool:
    """True if any authority row exists."""
    return session.scalars(select(CertificateAuthority.id).limit(1)).first() is not None


def remove_hierarchy(session: Session) -> None:
    """Delete every certificate, CRL and authority row (commits). Only for undoing a
    failed ``init`` on a database that had no CA before; never on a live CA."""
    from sqlalchemy import delete, text

    for table in ("revocations", "crls", "download_codes"):
        session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
    session.execute(delete(CertificateRecord))
    session.execute(update(CertificateAuthority).values(parent_id=None))
    session.execute(delete(CertificateAuthority))
    record_event(session, "ca.init_rolled_back", actor="cli", now=utc_now())
    session.commit()


def initialise_hierarchy(
    session: Session,
    keystore: KeyStore,
    config: CAConfig,
    *,
    now: dt.datetime,
    linter: Linter | None = None,
) -> tuple[Signer, Signer]:
    """Create the root CA, the issuing CA and the mTLS server certificate and key.

    Returns:
        ``(root, issuing)`` signers.

    Raises:
        CAAlreadyInitialised: an authority exists already in the database.
        ca.keys.KeyStoreError: a key file of the same name exists already.
    """
    if ca_exists(session):
        raise CAAlreadyInitialised("a CA exists already in this database; refusing to overwrite")
    root_ref, root_key = keystore.create_key(ROOT_CA_NAME, config.root_key_type)
    root_builder = build_certificate(
        root_profile(config.root_validity),
        subject=ca_subject(config.organization, f"{config.organization} Root CA 1"),
        public_key=root_key.public_key(),
        serial_number=generate_serial_number(),
        not_valid_before=now,
        issuer=None,
        urls=config.urls,
    )
    root_cert = sign_certificate(root_builder, root_key)
    root_row = _authority_row(ROOT_CA_NAME, CARole.ROOT, root_cert, root_ref, None, now)
    session.add(root_row)
    session.flush()
    root = Signer(root_row, root_cert, root_key)

    issuing_ref, issuing_key = keystore.create_key(ISSUING_CA_NAME, config.issuing_key_type)
    issuing_builder = build_certificate(
        issuing_ca_profile(config.issuing_validity),
        subject=ca_subject(config.organization, f"{config.organization} Issuing CA 1"),
        public_key=issuing_key.public_key(),
        serial_number=generate_serial_number(),
        not_valid_before=now,
        issuer=root.issuer,
        urls=config.urls,
    )
    issuing_cert = sign_certificate(issuing_builder, root_key)
    if linter is not None:
        for cert in (root_cert, issuing_cert):
            linter(cert.public_bytes(serialization.Encoding.DER))
    issuing_row = _authority_row(
        ISSUING_CA_NAME, CARole.ISSUING, issuing_cert, issuing_ref, root_row.id, now
    )
    session.add(issuing_row)
    for name, cert, ref in (
        (ROOT_CA_NAME, root_cert, root_ref),
        (ISSUING_CA_NAME, issuing_cert, issuing_ref),
    ):
        record_event(
            session,
            "ca.key_created",
            actor="cli",
            now=now,
            subject=name,
            details={"key_ref": ref, "certificate_subject": cert.subject.rfc4514_string()},
        )
    session.commit()
    issuing = Signer(issuing_row, issuing_cert, issuing_key)
    issue_server_certificate(session, keystore, issuing, config, now=now, linter=linter)
    return root, issuing


def issue_server_certificate(
    session: Session,
    keystore: KeyStore,
    issuing: Signer,
    config: CAConfig,
    *,
    now: dt.datetime,
    linter: Linter | None = None,
) -> tuple[CertificateRecord, x509.Certificate]:
    """Create the mTLS listener key (``mtls-server``) and its server certificate,
    with ``config.server_names`` as subjectAltNames."""
    _, key = keystore.create_key(MTLS_SERVER_KEY_NAME, KeyType.EC_P256)
    return issue_certificate(
        session,
        issuing,
        server_profile(config.server_validity),
        subject=x509.Name(
            [
                x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "HK"),
                x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, config.organization),
                x509.NameAttribute(x509.NameOID.COMMON_NAME, config.server_names[0]),
            ]
        ),
        public_key=key.public_key(),
        now=now,
        config=config,
        subject_alt_names=config.server_names,
        linter=linter,
    )


def latest_server_certificate(session: Session) -> CertificateRecord:
    """The newest issued ``mtls_server`` certificate.

    Raises:
        CANotInitialised: when none exists.
    """
    row = session.scalars(
        select(CertificateRecord)
        .where(
            CertificateRecord.profile == "mtls_server",
            CertificateRecord.status == CertificateStatus.ISSUED,
        )
        .order_by(CertificateRecord.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise CANotInitialised("no mTLS server certificate; run `ehrca init`")
    return row


def _authority_row(
    name: str,
    role: CARole,
    certificate: x509.Certificate,
    key_ref: str,
    parent_id: int | None,
    now: dt.datetime,
) -> CertificateAuthority:
    return CertificateAuthority(
        name=name,
        role=role,
        parent_id=parent_id,
        certificate_der=certificate.public_bytes(serialization.Encoding.DER),
        subject_key_identifier=_ski(certificate),
        key_ref=key_ref,
        not_valid_before=certificate.not_valid_before_utc,
        not_valid_after=certificate.not_valid_after_utc,
        active=True,
        crl_number=0,
        created_at=now,
    )
