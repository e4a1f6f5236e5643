"""Revocation use cases: revoke (durable before it is acknowledged) and publish CRLs.

CRL publication is single-writer per issuer: the CRL number is taken with
``UPDATE certificate_authorities SET crl_number = crl_number + 1 ... RETURNING``,
which row-locks on PostgreSQL and takes SQLite's write lock, and the new CRL row is
committed in the same transaction — CRL numbers strictly grow across restarts and
workers, and two publishers never sign the same number (RFC 5280 5.2.3).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.blocklist import block_key
from ca.keys import KeyStore
from ca.models import CARole, CertificateAuthority, CertificateRecord, CertificateStatus
from ca.service import get_authority
from revocation.crl import CRLEntry, build_crl, sign_crl
from revocation.errors import AlreadyRevoked, CertificateNotFound, InvalidRevocationRequest
from revocation.models import PublishedCRL, Revocation
from revocation.policy import check_reason


@dataclass(frozen=True, slots=True)
class RevocationResult:
    """What a revocation did: the row, and the serial and issuer it concerned."""

    revocation: Revocation
    certificate: CertificateRecord


def revoke_certificate(
    session: Session,
    *,
    serial_hex: str,
    reason: x509.ReasonFlags,
    actor: str,
    actor_role: str,
    now: dt.datetime,
    invalidity_date: dt.datetime | None = None,
    provider_reference: str | None = None,
) -> RevocationResult:
    """Revoke the certificate with ``serial_hex`` and commit before returning.

    Args:
        actor_role: ``security_officer`` or ``applicant`` (see ``revocation.policy``).
        provider_reference: when set (an applicant revoking), the certificate must
            belong to that provider, else it is reported as not found.
        invalidity_date: when the key is known or suspected to have been compromised
            (RFC 5280 5.3.2); not after ``now``.

    Raises:
        ReasonNotAllowed, InvalidRevocationRequest, CertificateNotFound, AlreadyRevoked.
    """
    check_reason(actor_role, reason)
    if invalidity_date is not None:
        if invalidity_date.tzinfo is None:
            raise InvalidRevocationRequest("invalidity_date must carry a timezone (use Z for UTC)")
        if invalidity_date > now:
            raise InvalidRevocationRequest("invalidity_date must not be in the future")
    query = select(CertificateRecord).where(CertificateRecord.serial_number == serial_hex)
    if provider_reference is not None:
        query = query.where(CertificateRecord.provider_reference == provider_reference)
    record = session.scalars(query.order_by(CertificateRecord.id.desc()).limit(1)).first()
    if record is None:
        raise CertificateNotFound(f"no certificate with serial number {serial_hex}")
    if record.status is CertificateStatus.REVOKED:
        existing = session.scalars(
            select(Revocation).where(Revocation.certificate_id == record.id)
        ).one()
        raise AlreadyRevoked(
            f"certificate {serial_hex} was revoked already",
            revocation_date=existing.revocation_date.isoformat(),
            revocation_reason=existing.revocation_reason,
        )
    revocation = Revocation(
        certificate_id=record.id,
        issuer_id=record.issuer_id,
        serial_number=record.serial_number,
        revocation_date=now.replace(microsecond=0),
        revocation_reason=reason.value,
        invalidity_date=invalidity_date.astimezone(dt.UTC) if invalidity_date else None,
        revoked_by=actor,
        not_valid_after=record.not_valid_after,
    )
    record.status = CertificateStatus.REVOKED
    session.add(revocation)
    if reason is x509.ReasonFlags.key_compromise and record.certificate_der is not None:
        public_key = x509.load_der_x509_certificate(record.certificate_der).public_key()
        block_key(session, public_key, reason="keyCompromise", actor=actor, now=now)  # type: ignore[arg-type]
    record_event(
        session,
        "certificate.revoked",
        actor=actor,
        now=now,
        subject=record.serial_number,
        details={
            "reason": reason.value,
            "invalidity_date": invalidity_date.isoformat() if invalidity_date else None,
            "role": actor_role,
        },
    )
    session.commit()
    return RevocationResult(revocation, record)


def crl_entries(session: Session, issuer_id: int) -> list[CRLEntry]:
    """Every revocation of ``issuer_id`` as CRL entries, in revocation order."""
    rows = session.execute(
        select(
            Revocation.serial_number,
            Revocation.revocation_date,
            Revocation.revocation_reason,
            Revocation.invalidity_date,
        )
        .where(Revocation.issuer_id == issuer_id)
        .order_by(Revocation.id)
    ).all()
    return [
        CRLEntry(int(serial, 16), revoked_at, x509.ReasonFlags(reason), invalid_at)
        for serial, revoked_at, reason, invalid_at in rows
    ]


def publish_crl(
    session: Session,
    keystore: KeyStore,
    authority_id: int,
    *,
    now: dt.datetime,
    validity: dt.timedelta,
) -> PublishedCRL:
    """Sign and store the next full CRL of ``authority_id``; commits.

    thisUpdate = ``now``, nextUpdate = ``now + validity`` (both whole seconds).

    Returns:
        The stored :class:`PublishedCRL` (``crl_number`` one above the previous).
    """
    crl_number = session.execute(
        update(CertificateAuthority)
        .where(CertificateAuthority.id == authority_id)
        .values(crl_number=CertificateAuthority.crl_number + 1)
        .returning(CertificateAuthority.crl_number)
    ).scalar_one()
    try:
        authority = session.get_one(CertificateAuthority, authority_id)
        issuer = x509.load_der_x509_certificate(authority.certificate_der)
        key = keystore.load_key(authority.key_ref)
        this_update = now.replace(microsecond=0)
        next_update = this_update + validity
        if authority.role is CARole.ROOT:
            entries: list[CRLEntry] = []  # revoked issuing CAs: none can be revoked yet
        else:
            entries = crl_entries(session, authority_id)
        crl = sign_crl(
            build_crl(
                issuer,
                entries,
                crl_number=crl_number,
                this_update=this_update,
                next_update=next_update,
            ),
            key,
        )
        row = PublishedCRL(
            issuer_id=authority_id,
            crl_number=crl_number,
            this_update=this_update,
            next_update=next_update,
            crl_der=crl.public_bytes(serialization.Encoding.DER),
        )
        session.add(row)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return row


def publish_all_crls(
    session: Session, keystore: KeyStore, *, now: dt.datetime, validity: dt.timedelta
) -> list[PublishedCRL]:
    """Publish a fresh CRL for every active authority (root and issuing)."""
    authorities = session.scalars(
        select(CertificateAuthority.id).where(CertificateAuthority.active.is_(True))
    ).all()
    return [
        publish_crl(session, keystore, authority_id, now=now, validity=validity)
        for authority_id in authorities
    ]


def latest_crl(session: Session, authority_id: int) -> PublishedCRL | None:
    """The newest CRL of ``authority_id``, or ``None`` if none was published."""
    return session.scalars(
        select(PublishedCRL)
        .where(PublishedCRL.issuer_id == authority_id)
        .order_by(PublishedCRL.crl_number.desc())
        .limit(1)
    ).first()


def issuing_authority(session: Session) -> CertificateAuthority:
    """The active issuing CA (re-exported for callers that only need revocation)."""
    return get_authority(session, CARole.ISSUING)
