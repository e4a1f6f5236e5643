"""Tables for people who log in on behalf of a provider, their staff accounts, the
activation codes that let them set a password, and technical support requests.

- :class:`Person`: one natural person — a user administrator, a healthcare
  professional with staff accounts, or both — with **one** login (email address)
  and **one** password. A person is identified by ``identity_key``, a keyed hash
  (HMAC-SHA256 with a server-side secret, see :mod:`registration.staff`) of the
  normalised identity document number: unlike the salted hash kept for user
  administrators, it can be looked up, so the same professional opened at a second
  provider attaches to the same identity.
- :class:`ProfessionalRegistration`: a person's number on one profession's register;
  a number belongs to one person, a person has one number per profession.
- :class:`StaffAccount`: a person's account at one provider (an application),
  active or disabled there, independently of the person's other accounts.
- :class:`UserAdminLogin`: links a user administrator named in an application
  (``user_admins``) to the person who activated the invitation.
- :class:`ActivationCode`: a single-use code (stored as SHA-256) mailed with an
  invitation or a new staff account, to set the person's password.
- :class:`SupportRequest`: a technical support request of an applicant.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base, str_enum


class StaffAccountStatus(enum.StrEnum):
    """A staff account is active or disabled at its provider."""

    ACTIVE = "active"
    DISABLED = "disabled"


class ActivationPurpose(enum.StrEnum):
    """Why an activation code was sent."""

    USER_ADMIN = "user_admin"  # invitation of a user administrator named in an application
    STAFF = "staff"  # a staff account was opened for a person without a password


class Person(Base):
    """A person with one login; ``password_hash`` is null until activation."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_key: Mapped[str] = mapped_column(String(64), unique=True)
    identity_document_last4: Mapped[str] = mapped_column(String(4))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime]
    activated_at: Mapped[dt.datetime | None]


class ProfessionalRegistration(Base):
    """A person's registration number in one profession (normalised, see
    :mod:`registration.professions`)."""

    __tablename__ = "professional_registrations"
    __table_args__ = (
        UniqueConstraint("profession", "registration_number"),
        UniqueConstraint("person_id", "profession"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    profession: Mapped[str] = mapped_column(String(48))
    registration_number: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime]


class StaffAccount(Base):
    """A person's account at one provider (``application_id``): at most one per
    provider and person."""

    __tablename__ = "staff_accounts"
    __table_args__ = (UniqueConstraint("application_id", "person_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    registration_id: Mapped[int] = mapped_column(
        ForeignKey("professional_registrations.id"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[StaffAccountStatus] = mapped_column(str_enum(StaffAccountStatus, 16))
    opened_at: Mapped[dt.datetime]
    opened_by: Mapped[str] = mapped_column(String(128))
    disabled_at: Mapped[dt.datetime | None]
    disabled_by: Mapped[str | None] = mapped_column(String(128))

    registration: Mapped[ProfessionalRegistration] = relationship()


class UserAdminLogin(Base):
    """The person who activated a user administrator's invitation."""

    __tablename__ = "user_admin_logins"

    user_admin_id: Mapped[int] = mapped_column(ForeignKey("user_admins.id"), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    activated_at: Mapped[dt.datetime]


class ActivationCode(Base):
    """A single-use activation code, stored as the SHA-256 of its normalised form.

    Exactly one of ``user_admin_id`` (purpose ``user_admin``) and ``person_id``
    (purpose ``staff``) is set. ``failed_attempts`` counts wrong identity document
    numbers or passwords given with it; at the limit the code is void.
    """

    __tablename__ = "activation_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[ActivationPurpose] = mapped_column(str_enum(ActivationPurpose, 16))
    user_admin_id: Mapped[int | None] = mapped_column(ForeignKey("user_admins.id"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)


class SupportRequest(Base):
    """A technical support request, accepted within 14 days of the acceptance email."""

    __tablename__ = "support_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime]
