"""CA use cases over the database and the key store: initialise the hierarchy, issue.

Issuance pipeline (Boulder's ``ca/``, step-ca's ``authority/tls.go``), each step a
named function so it can be tested (and, in tests, made to fail) alone:

1. request checks (``ca.checks.REQUEST_CHECKS``: issuer is a valid CA, key policy,
   subject, serial range);
2. build (``ca.profiles.build_certificate`` from the profile data);
3. certificate checks (``ca.checks.CERTIFICATE_CHECKS`` over the DER of the
   certificate signed with a throwaway key of the issuer's type: issuer name bytes,
   AKI/SKI, validity inside the issuer's, time and string encodings, extensions
   exactly the profile's);
4. lint (:func:`lint_draft`: pkilint's RFC 5280 linters in process);
5. reserve (:func:`reserve_serial`: serial and to-be-signed certificate committed,
   status ``reserved``; unique per issuer in the database);
6. sign (:func:`sign_reserved_certificate`: the issuer's real key);
7. store (:func:`store_signed_certificate`: the signed TBS must equal the recorded
   one; status ``reserved → issued``, conditionally: a row a bulk revocation marked
   ``revoked`` meanwhile stays ``revoked``).

A refusal in steps 1-4 commits an audit event (``certificate.refused``) and
nothing else. A crash between 5 and 7 leaves a ``reserved`` row that
:func:`stale_reservations` finds and a security officer revokes. With ECDSA and
RSA PKCS#1 v1.5 the TBS does not depend on the signing key (the signature
algorithm OID is the same), so the linted certificate and the real one differ only
in their signature.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Table, bindparam, case, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.checks import (
    CertificateRequest,
    CheckRefused,
    run_certificate_checks,
    run_request_checks,
)
from ca.config import CAConfig
from ca.errors import DomainError, ErrorCategory
from ca.keys import KeyStore, KeyType, PrivateKey, PublicKey
from ca.models import CARole, CertificateAuthority, CertificateRecord, CertificateStatus
from ca.profiles import (
    Issuer,
    Profile,
    build_certificate,
    ca_subject,
    configured_profiles,
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


class IdempotencyKeyTaken(CAError):
    """The idempotency key belongs to a certificate reserved or issued already; the
    caller looks it up (a concurrent repeat of the same request)."""

    code = "idempotency_key_in_progress"


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


@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """Pipeline steps 1-4 passed: the builder to sign for real and the throwaway-signed
    draft whose TBS the reservation records.

    Attributes:
        crl_shard: the CRL partition written into the distribution point, or ``None``.
    """

    request: CertificateRequest
    builder: x509.CertificateBuilder
    draft: x509.Certificate
    crl_shard: int | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Pipeline steps 1-4 refused: the error to raise once :func:`record_refusal` has
    committed the ``certificate.refused`` event."""

    request: CertificateRequest
    error: CheckRefused | LintRefused


def prepare_certificate(
    signer: Signer,
    profile: Profile,
    *,
    subject: x509.Name,
    public_key: PublicKey,
    now: dt.datetime,
    config: CAConfig,
    subject_alt_names: tuple[str, ...] = (),
    linter: Linter | None = None,
) -> PreparedCertificate | Refusal:
    """Pipeline steps 1-4 without the database: request checks → build → certificate
    checks over the throwaway-signed draft → lint (see the module docstring).

    Returns:
        :class:`PreparedCertificate`, or :class:`Refusal` (a check or the linter refused;
        the caller records it with :func:`record_refusal` and raises its ``error``).
    """
    request = CertificateRequest(
        profile=profile,
        issuer=signer.issuer,
        subject=subject,
        public_key=public_key,
        serial_number=generate_serial_number(),
        not_valid_before=now,
        subject_alt_names=tuple(subject_alt_names),
    )
    # CRL partition (revocation's EHRCA_CRL_SHARDS), chosen from the random serial.
    crl_shard = request.serial_number % config.crl_shards + 1 if config.crl_shards > 1 else None
    try:
        run_request_checks(request)
        builder = build_certificate(
            profile,
            subject=subject,
            public_key=public_key,
            serial_number=request.serial_number,
            not_valid_before=now,
            issuer=signer.issuer,
            urls=config.urls,
            subject_alt_names=subject_alt_names,
            crl_shard=crl_shard,
        )
        draft = sign_certificate(builder, _throwaway_key_like(signer.key))
        run_certificate_checks(request, draft)
        lint_draft(draft, linter)
    except (CheckRefused, LintRefused) as exc:
        return Refusal(request, exc)
    return PreparedCertificate(request, builder, draft, crl_shard)


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
    actor: str = "ca",
) -> tuple[CertificateRecord, x509.Certificate]:
    """Issue one certificate through the full pipeline (see the module docstring):
    request checks → build → certificate checks → lint → reserve → sign → store.

    The reserved row is committed before the real signature, and the issued row is
    committed after it: on return the certificate is durable.

    Args:
        session: this function commits it twice: the reservation (with anything the
            caller staged before, such as a claimed download code), then the result.
        signer: the issuing authority (from :func:`load_signer`).
        linter: called with the throwaway-signed DER; raising ``ValueError`` refuses.
        actor: who asked (recorded in the audit trail when the pipeline refuses).

    Returns:
        ``(record, certificate)``.

    Raises:
        ca.checks.CheckRefused: a request check (``certificate_request_refused``) or a
            certificate check (``certificate_check_failed``) refused.
        LintRefused: the linter refused the certificate (``certificate_lint_failed``).
            On these three refusals nothing is reserved or signed: the caller's staged
            changes are rolled back (a claimed download code is given back) and a
            ``certificate.refused`` audit event naming the stage and check is committed.
        IdempotencyKeyTaken: another reservation holds ``idempotency_key``.
        CAError: ``serial_reservation_failed`` (a duplicate serial: retry).
    """
    prepared = prepare_certificate(
        signer,
        profile,
        subject=subject,
        public_key=public_key,
        now=now,
        config=config,
        subject_alt_names=subject_alt_names,
        linter=linter,
    )
    if isinstance(prepared, Refusal):
        record_refusal(session, prepared.error, prepared.request, actor=actor, now=now)
        raise prepared.error
    builder, draft, crl_shard = prepared.builder, prepared.draft, prepared.crl_shard
    record = reserve_serial(
        session,
        signer,
        draft,
        profile=profile,
        provider_reference=provider_reference,
        service_location_id=service_location_id,
        key_generated_by_ca=key_generated_by_ca,
        idempotency_key=idempotency_key,
        now=now,
        crl_shard=crl_shard,
    )
    certificate = sign_reserved_certificate(builder, signer.key)
    store_signed_certificate(session, record, certificate, now=now)
    return record, certificate


def lint_draft(draft: x509.Certificate, linter: Linter | None) -> None:
    """Pipeline step "lint": run ``linter`` over the throwaway-signed DER.

    Raises:
        LintRefused: the linter raised ``ValueError`` (its ``findings`` are carried).
    """
    if linter is None:
        return
    try:
        linter(draft.public_bytes(serialization.Encoding.DER))
    except ValueError as exc:
        findings = tuple(str(f) for f in getattr(exc, "findings", ()))
        raise LintRefused(f"certificate refused by the linter: {exc}", findings) from exc


def record_refusal(
    session: Session,
    exc: CheckRefused | LintRefused,
    request: CertificateRequest,
    *,
    actor: str,
    now: dt.datetime,
) -> None:
    """Roll back the caller's staged work, then commit a ``certificate.refused`` event
    (stage, check, code, message, lint findings, profile, subject DN)."""
    session.rollback()
    if isinstance(exc, LintRefused):
        stage, check, findings = "lint", "pkilint", list(exc.findings)
    else:
        stage, check, findings = exc.stage, exc.check, []
    record_event(
        session,
        "certificate.refused",
        actor=actor,
        now=now,
        subject=serial_to_hex(request.serial_number)
        if 1 <= request.serial_number < 2**159
        else None,
        details={
            "stage": stage,
            "check": check,
            "code": exc.code,
            "message": exc.message[:1000],
            "findings": findings,
            "profile": request.profile.name,
            "subject_dn": request.subject.rfc4514_string(),
        },
    )
    session.commit()


def reserve_serial(
    session: Session,
    signer: Signer,
    draft: x509.Certificate,
    *,
    profile: Profile,
    provider_reference: str | None,
    service_location_id: int | None,
    key_generated_by_ca: bool,
    idempotency_key: str | None,
    now: dt.datetime,
    crl_shard: int | None = None,
) -> CertificateRecord:
    """Pipeline step "reserve": store the serial and the to-be-signed certificate with
    status ``reserved`` and commit (Boulder's "record intent before signing").

    ``crl_shard`` (the CRL partition in the certificate's distribution point) is stored
    with the reservation, so a reserved row revoked after a crash lands in the right
    partition CRL.

    Raises:
        IdempotencyKeyTaken: a row with ``idempotency_key`` exists (the unique index).
        CAError: ``serial_reservation_failed`` for a duplicate (issuer, serial).
    """
    record = CertificateRecord(
        issuer_id=signer.authority.id,
        serial_number=serial_to_hex(draft.serial_number),
        status=CertificateStatus.RESERVED,
        profile=profile.name,
        subject=draft.subject.rfc4514_string(),
        tbs_certificate_der=draft.tbs_certificate_bytes,
        not_valid_before=draft.not_valid_before_utc,
        not_valid_after=draft.not_valid_after_utc,
        provider_reference=provider_reference,
        service_location_id=service_location_id,
        key_generated_by_ca=key_generated_by_ca,
        idempotency_key=idempotency_key,
        created_at=now,
        crl_shard=crl_shard,
    )
    session.add(record)
    try:
        # Commits the reservation together with whatever the caller staged (e.g. the
        # claimed download code): intent is durable before the real signature.
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        if idempotency_key is not None and (
            session.scalars(
                select(CertificateRecord.id).where(
                    CertificateRecord.idempotency_key == idempotency_key
                )
            ).first()
            is not None
        ):
            raise IdempotencyKeyTaken(
                "a certificate with this idempotency key is reserved or issued already"
            ) from exc
        raise CAError(
            "could not reserve the serial number (duplicate serial); try again",
            code="serial_reservation_failed",
        ) from exc
    return record


def sign_reserved_certificate(
    builder: x509.CertificateBuilder, key: PrivateKey
) -> x509.Certificate:
    """Pipeline step "sign": the real signature with the issuer's key (only ever called
    after :func:`reserve_serial` committed)."""
    return sign_certificate(builder, key)


_certificates = cast(Table, CertificateRecord.__table__)
#: Pipeline step "store" as one statement (parameters ``b_id``, ``b_der``,
#: ``b_issued_at``): the DER and ``issued_at`` always, ``reserved → issued`` only from
#: ``reserved`` (a revocation that came first keeps ``revoked``). Executed with a list of
#: parameter sets it stores a batch.
STORE_SIGNED = (
    update(_certificates)
    .where(_certificates.c.id == bindparam("b_id"))
    .values(
        certificate_der=bindparam("b_der"),
        issued_at=bindparam("b_issued_at"),
        status=case(
            (
                _certificates.c.status == CertificateStatus.RESERVED,
                literal(CertificateStatus.ISSUED.value),
            ),
            else_=_certificates.c.status,
        ),
    )
)


def store_signed_certificate(
    session: Session, record: CertificateRecord, certificate: x509.Certificate, *, now: dt.datetime
) -> None:
    """Pipeline step "store": check the signed TBS equals the recorded one, store the
    certificate DER and ``issued_at``, move the row ``reserved → issued`` and commit.

    The status moves by a conditional ``CASE WHEN status = 'reserved'`` in the same
    statement as the DER (:data:`STORE_SIGNED`): a revocation that marked the reserved
    row ``revoked`` between the reservation and this step (e.g.
    ``revocation.service.revoke_provider_certificates`` withdrawing the provider) is
    never undone; the row keeps ``revoked`` with the signed certificate stored.
    ``record`` is refreshed from the database afterwards.

    Raises:
        CAError: ``signed_certificate_mismatch`` (the row stays ``reserved``, revocable).
    """
    if certificate.tbs_certificate_bytes != record.tbs_certificate_der:
        raise CAError(
            "signed certificate differs from the recorded to-be-signed certificate",
            code="signed_certificate_mismatch",
        )
    session.execute(
        STORE_SIGNED,
        {
            "b_id": record.id,
            "b_der": certificate.public_bytes(serialization.Encoding.DER),
            "b_issued_at": now,
        },
    )
    session.commit()
    session.refresh(record)


def stale_reservations(session: Session, *, before: dt.datetime) -> list[CertificateRecord]:
    """Rows still ``reserved`` that were created before ``before``: a crash between the
    reservation and the store. Each may have been signed; a security officer revokes it
    (``revocation.service.revoke_certificate`` accepts reserved rows) so the CRL covers it.
    """
    return list(
        session.scalars(
            select(CertificateRecord)
            .where(
                CertificateRecord.status == CertificateStatus.RESERVED,
                CertificateRecord.created_at < before,
            )
            .order_by(CertificateRecord.id)
        )
    )


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
    """Create the root CA, the issuing CA and the mTLS server certificate and key, with
    the ``root_ca``, ``issuing_ca`` and ``mtls_server`` profiles of
    :func:`ca.profiles.configured_profiles`. The issuing CA certificate passes the
    request and certificate checks of ``ca.checks`` before it is stored.

    Returns:
        ``(root, issuing)`` signers.

    Raises:
        CAAlreadyInitialised: an authority exists already in the database.
        ca.keys.KeyStoreError: a key file of the same name exists already.
        ca.profiles.ProfileError: the validity settings break a profile rule.
        ca.checks.CheckRefused: the issuing CA certificate failed a check.
    """
    if ca_exists(session):
        raise CAAlreadyInitialised("a CA exists already in this database; refusing to overwrite")
    profiles = configured_profiles(config)
    root_ref, root_key = keystore.create_key(ROOT_CA_NAME, config.root_key_type)
    root_builder = build_certificate(
        profiles["root_ca"],
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
    issuing_request = CertificateRequest(
        profile=profiles["issuing_ca"],
        issuer=root.issuer,
        subject=ca_subject(config.organization, f"{config.organization} Issuing CA 1"),
        public_key=issuing_key.public_key(),
        serial_number=generate_serial_number(),
        not_valid_before=now,
    )
    run_request_checks(issuing_request)
    issuing_builder = build_certificate(
        issuing_request.profile,
        subject=issuing_request.subject,
        public_key=issuing_request.public_key,
        serial_number=issuing_request.serial_number,
        not_valid_before=now,
        issuer=root.issuer,
        urls=config.urls,
    )
    issuing_cert = sign_certificate(issuing_builder, root_key)
    run_certificate_checks(issuing_request, issuing_cert)
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
        # The OCSP URL in AIA: the issuing CA runs a responder (revocation.responder).
        dataclasses.replace(configured_profiles(config)["mtls_server"], ocsp_pointer=True),
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
