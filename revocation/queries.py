"""Read-side helpers for the public PKI endpoints and the mTLS listener."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.models import CertificateAuthority, CertificateRecord, CertificateStatus
from ca.serials import serial_to_hex


@dataclass(frozen=True, slots=True)
class PresentedCertificate:
    """A client certificate presented over mTLS, resolved against the database.

    ``record`` is ``None`` when no issuing authority or no certificate row matches.
    """

    issuer_id: int | None
    serial_hex: str
    record: CertificateRecord | None


def authorities(session: Session) -> list[CertificateAuthority]:
    """Every authority, root first."""
    return list(session.scalars(select(CertificateAuthority).order_by(CertificateAuthority.id)))


def authority_by_name(session: Session, name: str) -> CertificateAuthority | None:
    """The authority called ``name`` (as in the PKI URLs), or ``None``; a name with NUL
    is never looked up (PostgreSQL refuses it in a query, and no CA is called that)."""
    if "\x00" in name:
        return None
    return session.scalars(
        select(CertificateAuthority).where(CertificateAuthority.name == name)
    ).first()


def resolve_presented(session: Session, certificate: x509.Certificate) -> PresentedCertificate:
    """Find the issuer (by authorityKeyIdentifier = the CA's SKI) and the stored row of a
    presented certificate; the stored DER must equal the presented one byte for byte."""
    serial_hex = serial_to_hex(certificate.serial_number)
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return PresentedCertificate(None, serial_hex, None)
    issuer = session.scalars(
        select(CertificateAuthority).where(
            CertificateAuthority.subject_key_identifier == aki.key_identifier
        )
    ).first()
    if issuer is None:
        return PresentedCertificate(None, serial_hex, None)
    record = session.scalars(
        select(CertificateRecord).where(
            CertificateRecord.issuer_id == issuer.id,
            CertificateRecord.serial_number == serial_hex,
            CertificateRecord.status != CertificateStatus.RESERVED,
        )
    ).first()
    if record is not None and record.certificate_der != certificate.public_bytes(Encoding.DER):
        record = None
    return PresentedCertificate(issuer.id, serial_hex, record)


def newest_crl_id(session: Session) -> int:
    """The id of the newest published CRL of any issuer (0 if none): the version the
    mTLS listeners poll to notice another worker's publication."""
    from sqlalchemy import func

    from revocation.models import PublishedCRL

    return int(session.scalar(select(func.coalesce(func.max(PublishedCRL.id), 0))) or 0)
