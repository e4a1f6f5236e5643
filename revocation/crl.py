"""Pure CRL building (RFC 5280 section 5): version 2, AKI and CRL number extensions,
one entry per revoked certificate with its revocation date, reason code (omitted for
``unspecified``, RFC 5280 5.3.1 says SHOULD be absent) and invalidity date (5.3.2).
An empty CRL has no revokedCertificates field (cryptography omits it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from ca.keys import PrivateKey
from ca.profiles import signature_hash


@dataclass(frozen=True, slots=True)
class CRLEntry:
    """One revoked certificate as it appears on a CRL."""

    serial_number: int
    revocation_date: dt.datetime
    revocation_reason: x509.ReasonFlags
    invalidity_date: dt.datetime | None = None


def build_revoked_certificate(entry: CRLEntry) -> x509.RevokedCertificate:
    """The CRL entry for ``entry`` (times truncated to whole seconds, UTC)."""
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(entry.serial_number)
        .revocation_date(entry.revocation_date.replace(microsecond=0))
    )
    if entry.revocation_reason is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(entry.revocation_reason), critical=False)
    if entry.invalidity_date is not None:
        builder = builder.add_extension(
            x509.InvalidityDate(entry.invalidity_date.replace(microsecond=0).replace(tzinfo=None)),
            critical=False,
        )
    return builder.build()


def build_crl(
    issuer: x509.Certificate,
    entries: Iterable[CRLEntry],
    *,
    crl_number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> x509.CertificateRevocationListBuilder:
    """Build (not sign) the full CRL of ``issuer``.

    Raises:
        ValueError: ``next_update`` not after ``this_update`` or a non-positive CRL number.
    """
    if crl_number <= 0:
        raise ValueError("CRL number must be positive, RFC 5280 5.2.3")
    if next_update <= this_update:
        raise ValueError("nextUpdate must be later than thisUpdate, RFC 5280 5.1.2.5")
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update.replace(microsecond=0))
        .next_update(next_update.replace(microsecond=0))
        .add_extension(x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for entry in entries:
        builder = builder.add_revoked_certificate(build_revoked_certificate(entry))
    return builder


def sign_crl(
    builder: x509.CertificateRevocationListBuilder, key: PrivateKey
) -> x509.CertificateRevocationList:
    """Sign ``builder`` with the issuer's ``key``."""
    return builder.sign(key, signature_hash(key))
