"""Tables owned by registration: applications, their steps, documents, officers, tokens."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base, str_enum


class ApplicationStatus(enum.StrEnum):
    """Application lifecycle (DESIGN.md, Domain)."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    DOCUMENTS_REQUESTED = "documents_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    EFFECTIVE = "effective"
    LAPSED = "lapsed"
    WITHDRAWN = "withdrawn"


class OfficerRole(enum.StrEnum):
    """Separate duties (DESIGN.md): no role does everything."""

    REVIEWER = "reviewer"
    SECURITY_OFFICER = "security_officer"
    ADMIN = "admin"


class Application(Base):
    """A provider's registration; the provider columns are step 1 (null until filled)."""

    __tablename__ = "applications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    contact_email: Mapped[str] = mapped_column(String(254))
    language: Mapped[str] = mapped_column(String(8))
    status: Mapped[ApplicationStatus] = mapped_column(str_enum(ApplicationStatus, 24), index=True)
    provider_type: Mapped[str | None] = mapped_column(String(32))
    name_en: Mapped[str | None] = mapped_column(String(64))
    name_zh: Mapped[str | None] = mapped_column(String(64))
    business_registration_number: Mapped[str | None] = mapped_column(String(16))
    correspondence_address: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[dt.datetime]
    submitted_at: Mapped[dt.datetime | None]
    decided_at: Mapped[dt.datetime | None]
    accepted_at: Mapped[dt.datetime | None]
    #: When the registration took effect (set by the ``become_effective`` time rule).
    effective_at: Mapped[dt.datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(Text)

    user_admins: Mapped[list[UserAdmin]] = relationship(
        back_populates="application", cascade="all, delete-orphan", order_by="UserAdmin.id"
    )
    service_locations: Mapped[list[ServiceLocation]] = relationship(
        back_populates="application",
        cascade="all, delete-orphan",
        order_by="ServiceLocation.number",
    )
    documents: Mapped[list[Document]] = relationship(
        back_populates="application", cascade="all, delete-orphan", order_by="Document.id"
    )
    events: Mapped[list[ApplicationEvent]] = relationship(
        back_populates="application", cascade="all, delete-orphan", order_by="ApplicationEvent.id"
    )


class UserAdmin(Base):
    """Step 2: a person who will administer staff accounts. The identity document
    number is kept only as a salted hash plus its last four characters."""

    __tablename__ = "user_admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    identity_document_hash: Mapped[str] = mapped_column(String(255))
    identity_document_last4: Mapped[str] = mapped_column(String(4))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(16))
    position: Mapped[str] = mapped_column(String(128))

    application: Mapped[Application] = relationship(back_populates="user_admins")


class ServiceLocation(Base):
    """Step 3: a place of care; ``number`` (1, 2, ...) is its ``id`` in the API."""

    __tablename__ = "service_locations"
    __table_args__ = (UniqueConstraint("application_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    name_en: Mapped[str] = mapped_column(String(64))
    name_zh: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(Text)
    district: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(16))
    opening_status: Mapped[str] = mapped_column(String(16))
    #: Set when the provider removed the location after registration (its certificates
    #: are revoked; its number is never reused).
    removed_at: Mapped[dt.datetime | None]

    application: Mapped[Application] = relationship(back_populates="service_locations")


class Document(Base):
    """Step 4: a supporting document, stored content-addressed by SHA-256."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("application_id", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[dt.datetime]

    application: Mapped[Application] = relationship(back_populates="documents")


class ApplicationEvent(Base):
    """A recorded transition: who moved the application, from where to where, and why."""

    __tablename__ = "application_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    from_status: Mapped[str] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[dt.datetime]

    application: Mapped[Application] = relationship(back_populates="events")


class ChangeRequest(Base):
    """A change to a registration after approval (``registration.changes``).

    ``kind`` is ``add_service_location`` (``pending`` until a reviewer approves or
    rejects it; ``proposal`` holds the location, ``service_location_id`` the location
    created on approval), ``remove_service_location`` or ``withdraw`` (``done`` at once:
    the provider needs no permission to stop). ``requested_by``/``reason`` and
    ``decided_by``/``decision_reason`` record who and why.
    """

    __tablename__ = "change_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    proposal: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    service_location_id: Mapped[int | None] = mapped_column(ForeignKey("service_locations.id"))
    requested_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[dt.datetime]
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[dt.datetime | None]

    application: Mapped[Application] = relationship()


class Officer(Base):
    """A registration or security officer, or an admin."""

    __tablename__ = "officers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[OfficerRole] = mapped_column(str_enum(OfficerRole, 24))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime]


class AccessToken(Base):
    """A bearer token, stored as the SHA-256 of the token (the token has 256 random bits,
    so a fast hash is enough; a stolen table gives no usable tokens)."""

    __tablename__ = "access_tokens"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))  # "applicant" | "officer"
    subject: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(24))
    expires_at: Mapped[dt.datetime]
