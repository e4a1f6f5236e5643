"""Collection, renewal and replacement of a service location's certificate.

Registration hands issuance an :class:`ApprovedLocation` (never the reverse, see
DESIGN.md); issuance checks the download code, applies the CSR policy or makes the
key, and runs the CA pipeline (``ca.service.issue_certificate``) with the ``client``
profile of ``ca/profiles.toml``.

Issuance never revokes (``revocation`` sits beside it, not below): when a new
certificate replaces an old one (renewal, or collection with a replacement code) the
result lists the old one in :attr:`CollectedCertificate.supersedes` and ``api/``
revokes it once the new one is issued.

Idempotency (``Idempotency-Key`` header, draft-ietf-httpapi-idempotency-key-header):
the key is stored, scoped to the provider and location, in the certificate row's
unique ``idempotency_key``. Repeating a CSR collection returns the same certificate
(``replayed``); a repeat while the first is still being signed gets
:class:`IdempotencyInProgress` (409); the same key with another CSR key gets
:class:`IdempotencyConflict`. A PKCS#12 download cannot be repeated: its key was never
stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.blocklist import is_blocked
from ca.config import CAConfig
from ca.errors import ErrorCategory
from ca.keys import KeyStore, KeyType, PublicKey, generate_private_key
from ca.models import CertificateAuthority, CertificateRecord, CertificateStatus
from ca.profiles import ProfileSet, client_subject, configured_profiles
from ca.service import IdempotencyKeyTaken, Linter, issue_certificate, load_signer
from issuance.codes import LINK_CERTIFICATE, ClaimedCode, create_download_code
from issuance.codes import claim_download_code as claim_download_code
from issuance.csr import check_csr
from issuance.errors import (
    CSRKeyRejected,
    DownloadCodeUsed,
    IssuanceError,
)
from issuance.mail import enqueue_mail
from issuance.models import DownloadCode
from issuance.pkcs12 import PKCS12Profile, check_pkcs12_password, serialize_pkcs12

#: Keys the service may generate for a PKCS#12 download.
GENERATED_KEY_TYPES = frozenset({KeyType.EC_P256, KeyType.RSA_2048, KeyType.RSA_3072})
#: The profile of ``ca/profiles.toml`` used for service-location certificates.
CLIENT_PROFILE = "client"
#: Reasons a security officer may give for a replacement code (RFC 5280 5.3.1 names).
REPLACEMENT_REASONS = frozenset({"superseded", "keyCompromise"})


class IdempotencyConflict(IssuanceError):
    """An ``Idempotency-Key`` was reused for a different request (another key in the
    CSR), or for a PKCS#12 download (whose key was never stored, so it cannot be
    returned twice)."""

    code = "idempotency_key_reused"
    category = ErrorCategory.CONFLICT


class IdempotencyInProgress(IssuanceError):
    """A request with the same ``Idempotency-Key`` is still being signed; retry later."""

    code = "idempotency_key_in_progress"
    category = ErrorCategory.CONFLICT


class RenewalTooEarly(IssuanceError):
    """Renewal is only allowed within the renewal window before notAfter."""

    code = "renewal_too_early"
    category = ErrorCategory.CONFLICT


class RenewalNotAllowed(IssuanceError):
    """The presented certificate is not a service location's issued client certificate."""

    code = "renewal_not_allowed"
    category = ErrorCategory.FORBIDDEN


class RenewalKeyReused(IssuanceError):
    """A renewal must certify a new key, not the current certificate's."""

    code = "renewal_key_reused"
    category = ErrorCategory.INVALID


class ReplacementRefused(IssuanceError):
    """A replacement code cannot be issued (unknown reason)."""

    code = "replacement_reason_invalid"
    category = ErrorCategory.INVALID


class CertificateNotFound(IssuanceError):
    """No issued certificate with that serial number."""

    code = "certificate_not_found"
    category = ErrorCategory.NOT_FOUND


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
    """What ``api/`` wires in: key store, CA configuration, optional pre-sign linter.

    The profiles (``ca/profiles.toml`` with the validity settings of ``config``) are
    loaded and validated when the context is made, so a bad setting stops start-up.

    Raises:
        ca.profiles.ProfileError: e.g. a client validity above the issuing CA's.
    """

    keystore: KeyStore
    config: CAConfig
    linter: Linter | None = None

    def __post_init__(self) -> None:
        configured_profiles(self.config)

    @property
    def profiles(self) -> ProfileSet:
        """The configured profiles (cached)."""
        return configured_profiles(self.config)


@dataclass(frozen=True, slots=True)
class Supersession:
    """A certificate that the new one replaces; ``api/`` revokes it with ``reason``
    (an RFC 5280 5.3.1 name: ``superseded`` or ``keyCompromise``).

    Attributes:
        requested_by: the security officer who issued the replacement code (``None``
            for a renewal, which the certificate holder asked for).
    """

    serial_number: str
    reason: str
    requested_by: str | None = None


@dataclass(frozen=True, slots=True)
class CollectedCertificate:
    """Result of a collection or renewal.

    Attributes:
        chain: the issuing CA, then up to the root.
        ignored: what the CSR asked for that was ignored (empty for PKCS#12).
        pkcs12: the DER PFX for the generated-key path, else ``None``.
        replayed: true when an idempotency key returned an earlier certificate.
        supersedes: certificates to revoke now that this one is issued.
    """

    record: CertificateRecord
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    ignored: tuple[str, ...] = ()
    pkcs12: bytes | None = None
    replayed: bool = False
    supersedes: tuple[Supersession, ...] = field(default=())


def issuer_chain(session: Session, issuer_id: int) -> tuple[x509.Certificate, ...]:
    """The certificate of authority ``issuer_id`` and its parents up to the root."""
    chain: list[x509.Certificate] = []
    authority = session.get(CertificateAuthority, issuer_id)
    while authority is not None and len(chain) < 8:
        chain.append(x509.load_der_x509_certificate(authority.certificate_der))
        if authority.parent_id is None:
            break
        authority = session.get(CertificateAuthority, authority.parent_id)
    return tuple(chain)


def _spki(public_key: PublicKey | x509.Certificate) -> bytes:
    key = public_key.public_key() if isinstance(public_key, x509.Certificate) else public_key
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def blocked_key_error() -> CSRKeyRejected:
    """The error for a key on the block list: ``CSRKeyRejected`` ``csr_key_blocked``."""
    return CSRKeyRejected(
        "this public key is blocked (a certificate for it was revoked for "
        "keyCompromise); generate a new key",
        code="csr_key_blocked",
    )


def check_not_blocked(session: Session, public_key: PublicKey) -> None:
    """Refuse a key on the block list (keys revoked for keyCompromise, by SPKI SHA-256).

    Raises:
        CSRKeyRejected: code ``csr_key_blocked``.
    """
    if is_blocked(session, public_key):
        raise blocked_key_error()


def _scoped_key(location: ApprovedLocation, idempotency_key: str | None) -> str | None:
    if idempotency_key is None:
        return None
    return f"{location.provider_reference}:{location.number}:{idempotency_key}"[:128]


def _replay(
    session: Session, scoped_key: str | None, public_key: PublicKey | None
) -> CollectedCertificate | None:
    """The certificate already made for ``scoped_key``, or ``None``.

    Raises:
        IdempotencyInProgress: it is still ``reserved`` (being signed).
        IdempotencyConflict: it was a PKCS#12 download, or ``public_key`` differs.
    """
    if scoped_key is None:
        return None
    record = session.scalars(
        select(CertificateRecord).where(CertificateRecord.idempotency_key == scoped_key)
    ).first()
    if record is None:
        return None
    if record.key_generated_by_ca:
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a PKCS#12 download; a generated key is never "
            "stored, so use a new Idempotency-Key and a new download code"
        )
    if record.certificate_der is None:
        raise IdempotencyInProgress(
            "a request with this Idempotency-Key is still being processed; retry shortly"
        )
    certificate = x509.load_der_x509_certificate(record.certificate_der)
    if public_key is not None and _spki(certificate) != _spki(public_key):
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a CSR for another key; use a new key"
        )
    return CollectedCertificate(
        record=record,
        certificate=certificate,
        chain=issuer_chain(session, record.issuer_id),
        replayed=True,
    )


#: Public names of the idempotency helpers (``api.collector`` uses them).
scoped_idempotency_key = _scoped_key
replay_collection = _replay


def _issue(
    session: Session,
    ctx: IssuanceContext,
    location: ApprovedLocation,
    *,
    public_key: PublicKey,
    now: dt.datetime,
    key_generated_by_ca: bool,
    scoped_key: str | None,
    claim: Callable[[], ClaimedCode] | None,
    actor: str,
    event_details: dict[str, object] | None = None,
) -> tuple[CertificateRecord, x509.Certificate, ClaimedCode | None]:
    """Claim the code (if any), run the CA pipeline, record the audit events, commit."""
    signer = load_signer(session, ctx.keystore)
    subject = client_subject(
        provider_name_en=location.provider_name_en,
        provider_name_zh=location.provider_name_zh,
        location_name_en=location.location_name_en,
        location_name_zh=location.location_name_zh,
        location_identifier=location.identifier,
    )
    code_row = claim() if claim is not None else None
    try:
        record, certificate = issue_certificate(
            session,
            signer,
            ctx.profiles[CLIENT_PROFILE],
            subject=subject,
            public_key=public_key,
            now=now,
            config=ctx.config,
            subject_alt_names=(location.uri(ctx.config.identity_base_uri),),
            provider_reference=location.provider_reference,
            service_location_id=location.service_location_id,
            key_generated_by_ca=key_generated_by_ca,
            idempotency_key=scoped_key,
            linter=ctx.linter,
            actor=actor,
        )
    except BaseException:
        session.rollback()  # gives the download code back unless the reservation committed
        raise
    if code_row is not None:
        session.execute(LINK_CERTIFICATE, {"b_id": code_row.id, "b_certificate": record.id})
    record_event(
        session,
        "certificate.issued",
        actor=actor,
        now=now,
        subject=record.serial_number,
        details={
            "profile": record.profile,
            "service_location": location.number,
            "key_generated_by_ca": key_generated_by_ca,
            "subject_dn": record.subject,
            **(event_details or {}),
        },
    )
    if key_generated_by_ca:
        record_event(
            session,
            "certificate.pkcs12_delivered",
            actor=actor,
            now=now,
            subject=record.serial_number,
        )
    session.commit()
    return record, certificate, code_row


def _supersessions(session: Session, code_row: ClaimedCode | None) -> tuple[Supersession, ...]:
    """What collecting with ``code_row`` replaces (a replacement code), if anything."""
    if code_row is None or code_row.replaces_certificate_id is None:
        return ()
    old = session.get(CertificateRecord, code_row.replaces_certificate_id)
    if old is None:
        return ()
    return (
        Supersession(
            old.serial_number,
            code_row.replacement_reason or "superseded",
            requested_by=code_row.requested_by,
        ),
    )


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

    Only the CSR's public key is used; what else it asked for is listed in ``ignored``.

    Raises:
        issuance.errors.CSRMalformed, CSRTooLarge, CSRSignatureInvalid, CSRKeyRejected:
            the CSR policy (``issuance.csr``), and ``csr_key_blocked``.
        issuance.errors.DownloadCodeInvalid, DownloadCodeUsed, DownloadCodeExpired.
        IdempotencyConflict, IdempotencyInProgress: see the module docstring.
        ca.checks.CheckRefused, ca.service.LintRefused: the pipeline refused.
    """
    checked = check_csr(csr)
    scoped = _scoped_key(location, idempotency_key)
    replay = _replay(session, scoped, checked.public_key)
    if replay is not None:
        return replay
    check_not_blocked(session, checked.public_key)
    try:
        record, certificate, code_row = _issue(
            session,
            ctx,
            location,
            public_key=checked.public_key,
            now=now,
            key_generated_by_ca=False,
            scoped_key=scoped,
            claim=lambda: claim_download_code(
                session, location.service_location_id, download_code, now=now
            ),
            actor=location.provider_reference,
        )
    except (DownloadCodeUsed, IdempotencyKeyTaken):
        # A concurrent repeat with the same Idempotency-Key may have won the race.
        session.rollback()
        replay = _replay(session, scoped, checked.public_key)
        if replay is not None:
            return replay
        raise
    return CollectedCertificate(
        record,
        certificate,
        issuer_chain(session, record.issuer_id),
        ignored=checked.ignored,
        supersedes=_supersessions(session, code_row),
    )


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
        IdempotencyConflict: the key was used before (a PKCS#12 cannot be replayed).
        The download-code and pipeline errors of :func:`collect_with_csr`.
    """
    check_pkcs12_password(password)
    if key_type not in GENERATED_KEY_TYPES:
        raise ValueError(f"key_type must be one of {sorted(GENERATED_KEY_TYPES)}")
    scoped = _scoped_key(location, idempotency_key)
    if _replay(session, scoped, None) is not None:
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a CSR collection; use a new Idempotency-Key"
        )
    key = generate_private_key(key_type)
    record, certificate, code_row = _issue(
        session,
        ctx,
        location,
        public_key=key.public_key(),
        now=now,
        key_generated_by_ca=True,
        scoped_key=scoped,
        claim=lambda: claim_download_code(
            session, location.service_location_id, download_code, now=now
        ),
        actor=location.provider_reference,
    )
    chain = issuer_chain(session, record.issuer_id)
    blob = serialize_pkcs12(
        friendly_name=location.location_name_en,
        private_key=key,
        certificate=certificate,
        ca_certificates=list(chain),
        password=password,
        profile=profile,
    )
    return CollectedCertificate(
        record, certificate, chain, pkcs12=blob, supersedes=_supersessions(session, code_row)
    )


def renewal_opens_at(record: CertificateRecord, window: dt.timedelta) -> dt.datetime:
    """When the renewal window of ``record`` opens: ``notAfter - window``."""
    return record.not_valid_after - window


def renew_with_csr(
    session: Session,
    ctx: IssuanceContext,
    location: ApprovedLocation,
    *,
    current: CertificateRecord,
    csr: bytes,
    now: dt.datetime,
    renewal_window: dt.timedelta,
) -> CollectedCertificate:
    """Issue a new certificate for ``location`` to the clinic machine that presented
    ``current`` over mTLS, for the new key in ``csr``; ``current`` is superseded.

    One renewal per current certificate: the new row's idempotency key is
    ``renewal:<issuer id>:<serial>``, so a repeat (the response was lost) returns the
    same new certificate and a concurrent one cannot make a second.

    Raises:
        RenewalNotAllowed: ``current`` is not this location's issued client certificate.
        RenewalTooEarly: ``now`` is before :func:`renewal_opens_at` (detail
            ``renewal_opens_at``).
        RenewalKeyReused: the CSR's key is the current certificate's.
        The CSR and pipeline errors of :func:`collect_with_csr`.
    """
    if (
        current.profile != CLIENT_PROFILE
        or current.status is not CertificateStatus.ISSUED
        or current.service_location_id != location.service_location_id
        or current.certificate_der is None
    ):
        raise RenewalNotAllowed("only a service location's issued client certificate renews")
    opens = renewal_opens_at(current, renewal_window)
    if now < opens:
        raise RenewalTooEarly(
            f"renewal opens {renewal_window.days} days before notAfter, at {opens.isoformat()}",
            renewal_opens_at=opens.isoformat(),
        )
    checked = check_csr(csr)
    if _spki(checked.public_key) == _spki(x509.load_der_x509_certificate(current.certificate_der)):
        raise RenewalKeyReused("a renewal needs a new key; the CSR has the current one")
    scoped = f"renewal:{current.issuer_id}:{current.serial_number}"
    supersedes = (Supersession(current.serial_number, "superseded"),)
    replay = _replay(session, scoped, checked.public_key)
    if replay is not None:
        return CollectedCertificate(
            replay.record, replay.certificate, replay.chain, replayed=True, supersedes=supersedes
        )
    check_not_blocked(session, checked.public_key)
    try:
        record, certificate, _ = _issue(
            session,
            ctx,
            location,
            public_key=checked.public_key,
            now=now,
            key_generated_by_ca=False,
            scoped_key=scoped,
            claim=None,
            actor=f"mtls:{current.serial_number}",
            event_details={"renews": current.serial_number},
        )
    except IdempotencyKeyTaken:
        session.rollback()
        replay = _replay(session, scoped, checked.public_key)
        if replay is None:
            raise
        return CollectedCertificate(
            replay.record, replay.certificate, replay.chain, replayed=True, supersedes=supersedes
        )
    return CollectedCertificate(
        record,
        certificate,
        issuer_chain(session, record.issuer_id),
        ignored=checked.ignored,
        supersedes=supersedes,
    )


@dataclass(frozen=True, slots=True)
class ReplacementCode:
    """A replacement download code was issued and mailed (the code itself is only in the
    mail).

    Attributes:
        replaces_serial_number: the certificate that collecting with it revokes, if any.
        reason: ``superseded`` or ``keyCompromise``.
        expires_at: when the code stops working.
    """

    service_location: int
    replaces_serial_number: str | None
    reason: str
    expires_at: dt.datetime


def current_certificate(session: Session, service_location_id: int) -> CertificateRecord | None:
    """The newest issued (not revoked) client certificate of a service location."""
    return session.scalars(
        select(CertificateRecord)
        .where(
            CertificateRecord.service_location_id == service_location_id,
            CertificateRecord.profile == CLIENT_PROFILE,
            CertificateRecord.status == CertificateStatus.ISSUED,
        )
        .order_by(CertificateRecord.id.desc())
        .limit(1)
    ).first()


def issue_replacement_code(
    session: Session,
    location: ApprovedLocation,
    *,
    reason: str,
    officer: str,
    recipient: str,
    language: str,
    base_url: str,
    now: dt.datetime,
    validity: dt.timedelta,
) -> ReplacementCode:
    """A security officer's replacement for a lost key: a new download code for
    ``location``, mailed to the applicant through the outbox (commits).

    Unused codes of the location stop working; collecting with the new one revokes the
    location's current certificate with ``reason`` (``api/`` does, see
    :class:`Supersession`). The code is never returned: only the mail carries it.

    Raises:
        ReplacementRefused: ``reason`` is not ``superseded`` or ``keyCompromise``.
    """
    if reason not in REPLACEMENT_REASONS:
        raise ReplacementRefused(
            f"reason must be one of {sorted(REPLACEMENT_REASONS)} (RFC 5280 5.3.1 names)"
        )
    current = current_certificate(session, location.service_location_id)
    session.execute(
        update(DownloadCode)
        .where(
            DownloadCode.service_location_id == location.service_location_id,
            DownloadCode.used_at.is_(None),
            DownloadCode.expires_at > now,
        )
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    code = create_download_code(
        session,
        location.service_location_id,
        now=now,
        validity=validity,
        replaces_certificate_id=current.id if current is not None else None,
        replacement_reason=reason,
        requested_by=officer,
    )
    expires_at = now + validity
    enqueue_mail(
        session,
        recipient=recipient,
        template="replacement_code",
        language=language,
        context={
            "reference": location.provider_reference,
            "provider_name": (
                location.provider_name_zh
                if language != "en" and location.provider_name_zh
                else location.provider_name_en
            ),
            "location_number": location.number,
            "location_name": location.location_name_en,
            "code": code,
            "expires_on": expires_at.date().isoformat(),
            "base_url": base_url,
            "replaces_serial_number": current.serial_number if current is not None else None,
            "key_compromise": reason == "keyCompromise",
        },
        now=now,
    )
    record_event(
        session,
        "download_code.replacement_issued",
        actor=officer,
        now=now,
        subject=location.provider_reference,
        details={
            "service_location": location.number,
            "replaces": current.serial_number if current is not None else None,
            "reason": reason,
        },
    )
    session.commit()
    return ReplacementCode(
        service_location=location.number,
        replaces_serial_number=current.serial_number if current is not None else None,
        reason=reason,
        expires_at=expires_at,
    )


def find_certificate(session: Session, serial_hex: str) -> CertificateRecord | None:
    """The issued or revoked certificate with ``serial_hex`` from any issuer, or ``None``."""
    return session.scalars(
        select(CertificateRecord).where(
            CertificateRecord.serial_number == serial_hex,
            CertificateRecord.status != CertificateStatus.RESERVED,
        )
    ).first()
