"""Tables owned by issuance: download codes and the mail outbox."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, Text
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
