"""Tables owned by revocation: revoked certificates, published CRLs, OCSP responders and
their pre-signed responses."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ca.models import CertificateAuthority
from db.base import Base


class Revocation(Base):
    """A revoked certificate (RFC 5280 5.1.2.6 revokedCertificates entry).

    ``revocation_reason`` is the name of a :class:`cryptography.x509.ReasonFlags`
    member value (e.g. ``keyCompromise``); ``invalidity_date`` as in RFC 5280 5.3.2.
    ``not_valid_after`` is the certificate's notAfter: the entry leaves the CRL once
    it is past (plus the ``keep_expired`` grace of :class:`revocation.service.CRLPolicy`).
    ``crl_shard`` is the certificate's CRL partition (``None``: not partitioned).
    ``entry_der`` is the entry's DER as it appears on every CRL that lists it
    (``revocation.crl_der.encode_crl_entry`` of serial, date, reason and invalidity
    date), written with the row: publication concatenates these instead of encoding
    each entry again.

    ``id`` grows with every revocation *in commit order* (revocations take the audit
    chain's head lock before their row is inserted, see ``revocation.service``), so
    ``max(id)`` is the revocation version that mTLS workers poll.
    """

    __tablename__ = "revocations"
    __table_args__ = (UniqueConstraint("certificate_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"), index=True)
    serial_number: Mapped[str] = mapped_column(String(40))
    revocation_date: Mapped[dt.datetime]
    revocation_reason: Mapped[str] = mapped_column(String(32))
    invalidity_date: Mapped[dt.datetime | None]
    revoked_by: Mapped[str] = mapped_column(String(128))
    not_valid_after: Mapped[dt.datetime]
    crl_shard: Mapped[int | None] = mapped_column(Integer)
    entry_der: Mapped[bytes] = mapped_column(LargeBinary)


class PublishedCRL(Base):
    """A signed CRL (DER) as served at the distribution point.

    ``shard`` is ``None`` for the full CRL of the issuer and ``1..n`` for a partition
    (RFC 5280 5.2.5, issuingDistributionPoint). CRL numbers come from one counter per
    issuer shared by every scope, so they are unique per issuer.
    """

    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("issuer_id", "crl_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"), index=True)
    crl_number: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[dt.datetime]
    next_update: Mapped[dt.datetime]
    crl_der: Mapped[bytes] = mapped_column(LargeBinary)
    shard: Mapped[int | None] = mapped_column(Integer)

    issuer: Mapped[CertificateAuthority] = relationship(lazy="joined")


class OCSPResponder(Base):
    """A delegated OCSP responder of an issuing CA (RFC 6960 4.2.2.2): the certificate
    (a row of ``certificates``, profile ``ocsp_responder``) and the key store URI of its
    key. The newest one still valid is current; older ones stay for the record."""

    __tablename__ = "ocsp_responders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"), index=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    key_ref: Mapped[str] = mapped_column(String(255))
    not_valid_before: Mapped[dt.datetime]
    not_valid_after: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]


class OCSPResponseCache(Base):
    """A pre-signed OCSP response without nonce for one certificate (RFC 5019 style).

    ``cert_status`` is ``good`` or ``revoked`` (unknown serials are never stored). A
    row is served only while it agrees with ``revocations`` and was signed by the
    current responder, and is replaced on revocation (``revocation.responder``).
    """

    __tablename__ = "ocsp_responses"
    __table_args__ = (UniqueConstraint("issuer_id", "serial_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"))
    serial_number: Mapped[str] = mapped_column(String(40))
    cert_status: Mapped[str] = mapped_column(String(16))
    responder_id: Mapped[int] = mapped_column(ForeignKey("ocsp_responders.id"))
    this_update: Mapped[dt.datetime]
    next_update: Mapped[dt.datetime]
    response_der: Mapped[bytes] = mapped_column(LargeBinary)
