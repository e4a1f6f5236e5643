"""Tables owned by revocation: one row per revoked certificate, one per published CRL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ca.models import CertificateAuthority
from db.base import Base


class Revocation(Base):
    """A revoked certificate (RFC 5280 5.1.2.6 revokedCertificates entry).

    ``revocation_reason`` is the name of a :class:`cryptography.x509.ReasonFlags`
    member value (e.g. ``keyCompromise``); ``invalidity_date`` as in RFC 5280 5.3.2.
    ``id`` grows with every revocation, so ``max(id)`` is the revocation version that
    mTLS workers poll.
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


class PublishedCRL(Base):
    """A signed CRL (DER) as served at the distribution point."""

    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("issuer_id", "crl_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"), index=True)
    crl_number: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[dt.datetime]
    next_update: Mapped[dt.datetime]
    crl_der: Mapped[bytes] = mapped_column(LargeBinary)

    issuer: Mapped[CertificateAuthority] = relationship(lazy="joined")
