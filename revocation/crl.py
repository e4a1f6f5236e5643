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
    """The CRL entry for ``entry`` (times truncated to whole seconds, UTC; aware times in
    any zone are converted, naive ones are taken as UTC)."""
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(entry.serial_number)
        .revocation_date(entry.revocation_date.replace(microsecond=0))
    )
    if entry.revocation_reason is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(entry.revocation_reason), critical=False)
    if entry.invalidity_date is not None:
        builder = builder.add_extension(
            x509.InvalidityDate(entry.invalidity_date.replace(microsecond=0)),
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
    distribution_point: str | None = None,
) -> x509.CertificateRevocationListBuilder:
    """Build (not sign) a CRL of ``issuer``: the full CRL, or one partition of it.

    Args:
        entries: the revoked certificates to list, in order; none gives a CRL without
            the revokedCertificates field (RFC 5280 5.1.2.6).
        crl_number: RFC 5280 5.2.3, positive.
        this_update / next_update: aware datetimes, truncated to whole seconds.
        distribution_point: for a partition (a "shard"), the URL written into the
            certificates it covers; the CRL then carries a critical
            issuingDistributionPoint naming it (RFC 5280 5.2.5) with
            onlyContainsUserCerts (partitions hold end-entity certificates only), so a
            relying party uses it only for certificates that point at it.

    Raises:
        ValueError: ``next_update`` not after ``this_update`` or a non-positive CRL number.
    """
    if crl_number <= 0:
        raise ValueError("CRL number must be positive, RFC 5280 5.2.3")
    this_update = this_update.replace(microsecond=0)
    next_update = next_update.replace(microsecond=0)
    if next_update <= this_update:
        raise ValueError("nextUpdate must be later than thisUpdate, RFC 5280 5.1.2.5")
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    if distribution_point is not None:
        builder = builder.add_extension(
            partition_distribution_point(distribution_point), critical=True
        )
    for entry in entries:
        builder = builder.add_revoked_certificate(build_revoked_certificate(entry))
    return builder


def partition_distribution_point(url: str) -> x509.IssuingDistributionPoint:
    """The issuingDistributionPoint of a CRL partition published at ``url`` (RFC 5280
    5.2.5): distributionPoint fullName = ``url``, onlyContainsUserCerts (partitions list
    end-entity certificates only); always marked critical on the CRL."""
    return x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        only_contains_user_certs=True,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )


def sign_crl(
    builder: x509.CertificateRevocationListBuilder, key: PrivateKey
) -> x509.CertificateRevocationList:
    """Sign ``builder`` with the issuer's ``key``."""
    return builder.sign(key, signature_hash(key))
