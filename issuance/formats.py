"""Download formats for a collected certificate (``GET /api/v1/certificates/{serial}``).

- ``pem``: the certificate, PEM (RFC 7468 section 5), ``application/x-pem-file``;
- ``der``: the certificate, DER, ``application/pkix-cert`` (RFC 2585 section 4.1);
- ``chain``: PEM of the certificate, then its issuing CA, then the root (the same
  certificates as a PKCS#12 download carries), ``application/x-pem-file``;
- ``p7c``: the same three as a degenerate PKCS#7 SignedData "certs-only" message
  (RFC 2315 section 9.1, RFC 8551 section 3.2.2: ``application/pkcs7-mime``,
  ``smime-type=certs-only``, extension ``.p7c``), DER, the format Windows imports a
  chain from.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from sqlalchemy.orm import Session

from ca.models import CertificateRecord
from issuance.service import CertificateNotFound, find_certificate, issuer_chain


class CertificateFormat(enum.StrEnum):
    """The ``format`` query parameter."""

    PEM = "pem"
    DER = "der"
    CHAIN = "chain"
    P7C = "p7c"


MEDIA_TYPES: dict[CertificateFormat, str] = {
    CertificateFormat.PEM: "application/x-pem-file",
    CertificateFormat.DER: "application/pkix-cert",
    CertificateFormat.CHAIN: "application/x-pem-file",
    CertificateFormat.P7C: "application/pkcs7-mime; smime-type=certs-only",
}
FILE_SUFFIXES: dict[CertificateFormat, str] = {
    CertificateFormat.PEM: ".pem",
    CertificateFormat.DER: ".cer",
    CertificateFormat.CHAIN: "-chain.pem",
    CertificateFormat.P7C: ".p7c",
}


@dataclass(frozen=True, slots=True)
class ExportedCertificate:
    """Bytes to send, their media type and a download file name."""

    content: bytes
    media_type: str
    filename: str


def render_certificate(
    certificate: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    fmt: CertificateFormat,
) -> bytes:
    """Encode ``certificate`` (and for ``chain``/``p7c`` its ``chain``) as ``fmt``.

    Args:
        chain: the issuing CA first, then up to the root.
    """
    pem = serialization.Encoding.PEM
    if fmt is CertificateFormat.DER:
        return certificate.public_bytes(serialization.Encoding.DER)
    if fmt is CertificateFormat.PEM:
        return certificate.public_bytes(pem)
    if fmt is CertificateFormat.CHAIN:
        return b"".join(c.public_bytes(pem) for c in (certificate, *chain))
    return pkcs7.serialize_certificates([certificate, *chain], serialization.Encoding.DER)


def export_certificate(
    session: Session, serial_hex: str, fmt: CertificateFormat
) -> ExportedCertificate:
    """The issued (or revoked) certificate ``serial_hex`` in ``fmt``.

    Raises:
        CertificateNotFound: no such certificate, or it was only reserved.
    """
    record = find_certificate(session, serial_hex)
    if record is None or record.certificate_der is None:
        raise CertificateNotFound(f"no certificate with serial number {serial_hex}")
    return export_record(session, record, fmt)


def export_record(
    session: Session, record: CertificateRecord, fmt: CertificateFormat
) -> ExportedCertificate:
    """:func:`export_certificate` for a row already found.

    Raises:
        CertificateNotFound: the row holds no signed certificate (``reserved``).
    """
    if record.certificate_der is None:
        raise CertificateNotFound(f"no certificate with serial number {record.serial_number}")
    serial_hex = record.serial_number
    certificate = x509.load_der_x509_certificate(record.certificate_der)
    chain = (
        ()
        if fmt in (CertificateFormat.PEM, CertificateFormat.DER)
        else issuer_chain(session, record.issuer_id)
    )
    return ExportedCertificate(
        content=render_certificate(certificate, chain, fmt),
        media_type=MEDIA_TYPES[fmt],
        filename=f"{serial_hex}{FILE_SUFFIXES[fmt]}",
    )
