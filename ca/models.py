"""Tables owned by the CA: authorities and every certificate they sign.

A :class:`CertificateRecord` is written *before* signing (status ``reserved``, with
the to-be-signed certificate), then completed (``issued``, with the certificate) —
Boulder's "record intent before signing": a crash in between leaves a row that can
still be found and revoked.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base, str_enum


class CARole(enum.StrEnum):
    """Place of an authority in the hierarchy."""

    ROOT = "root"
    ISSUING = "issuing"


class CertificateStatus(enum.StrEnum):
    """Lifecycle of a certificate row: reserved (intent recorded) → issued → revoked."""

    RESERVED = "reserved"
    ISSUED = "issued"
    REVOKED = "revoked"


class CertificateAuthority(Base):
    """A CA of the hierarchy: its certificate, key reference and CRL counter.

    ``crl_number`` is the number of the last CRL it published (RFC 5280 5.2.3);
    the row is locked while a CRL is built so CRL numbers only grow.
    """

    __tablename__ = "certificate_authorities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[CARole] = mapped_column(str_enum(CARole, 16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("certificate_authorities.id"))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    subject_key_identifier: Mapped[bytes] = mapped_column(LargeBinary(20))
    key_ref: Mapped[str] = mapped_column(String(255))
    not_valid_before: Mapped[dt.datetime]
    not_valid_after: Mapped[dt.datetime]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    crl_number: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime]


class CertificateRecord(Base):
    """One certificate signed (or about to be signed) by an authority.

    ``serial_number`` is 40 lowercase hex digits (``ca.serials``), unique per issuer.
    ``provider_reference`` and ``service_location_id`` say whose secure connection
    certificate it is (null for the mTLS server and other CA-internal certificates).
    """

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("issuer_id", "serial_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authorities.id"), index=True)
    serial_number: Mapped[str] = mapped_column(String(40))
    status: Mapped[CertificateStatus] = mapped_column(str_enum(CertificateStatus, 16))
    profile: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text)
    tbs_certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    not_valid_before: Mapped[dt.datetime]
    #: Indexed for the expiry-notice scan (``issuance.expiry``, migration 0007).
    not_valid_after: Mapped[dt.datetime] = mapped_column(index=True)
    provider_reference: Mapped[str | None] = mapped_column(String(32), index=True)
    service_location_id: Mapped[int | None] = mapped_column(Integer, index=True)
    key_generated_by_ca: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime]
    issued_at: Mapped[dt.datetime | None]
    #: CRL partition written into the certificate's CRL distribution point (1..n), or
    #: ``None`` when CRLs were not partitioned at issuance (revocation owns the column).
    crl_shard: Mapped[int | None] = mapped_column(Integer)

    issuer: Mapped[CertificateAuthority] = relationship(lazy="joined")
