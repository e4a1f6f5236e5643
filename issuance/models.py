"""Tables owned by issuance: download codes, the mail outbox and sent expiry notices."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base


class DownloadCode(Base):
    """A single-use code to collect one service location's certificate.

    Only the SHA-256 of the code is stored: codes carry 100+ random bits, so a slow
    password hash would add nothing but latency. ``used_at`` is set in the same
    transaction that stores the certificate.
    """

    __tablename__ = "download_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_location_id: Mapped[int] = mapped_column(ForeignKey("service_locations.id"), index=True)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"))
    #: A replacement code (lost key): the certificate that collecting with it revokes,
    #: the RFC 5280 reason (``superseded`` or ``keyCompromise``) and the security officer.
    replaces_certificate_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"))
    replacement_reason: Mapped[str | None] = mapped_column(String(32))
    requested_by: Mapped[str | None] = mapped_column(String(128))


class OutboxMail(Base):
    """An email waiting to be (or already) delivered; written in the same transaction as
    the decision that caused it, so a decision is never lost because mail failed."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class ExpiryNotice(Base):
    """An expiry notice queued for one certificate at one threshold (30, 14, 7 or 1
    days before notAfter); the unique pair makes each notice go out once, even when
    several workers run the task at the same time."""

    __tablename__ = "expiry_notices"
    __table_args__ = (UniqueConstraint("certificate_id", "days_before"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    days_before: Mapped[int] = mapped_column(Integer)
    queued_at: Mapped[dt.datetime]
    mail_id: Mapped[int | None] = mapped_column(ForeignKey("mail_outbox.id"))
