"""Officers, logins and bearer tokens.

A login returns an opaque bearer token of 256 random bits; only its SHA-256 is
stored (``access_tokens``), with an expiry. Usernames that look like an application
reference (``HCP-...``) log in as that applicant; usernames with ``@`` are the email
logins of people (user administrators and staff, :mod:`registration.staff`); any
other name is an officer (officer names cannot contain ``@``).

A failed login is audited (``auth.login_failed``) with the typed username only when it
has the shape of a username (:func:`username_for_audit`): someone who types a password
into the username field must not have it stored in the audit trail.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ca.audit import record_event
from registration.errors import Forbidden, InvalidCredentials, NotAuthenticated, OfficerExists
from registration.models import AccessToken, Application, Officer, OfficerRole
from registration.passwords import hash_password, verify_password

REFERENCE_PATTERN = re.compile(r"^HCP-[0-9A-Z]{8}$")
OFFICER_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 12
#: The audit actor of a failed login whose username has no username's shape.
MALFORMED_USERNAME = "<malformed>"
#: Longest email address (RFC 5321 4.5.3.1: 64 + 1 + 255, limited by the 256-octet
#: path to 254) recorded for a failed login.
MAX_EMAIL_LENGTH = 254


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an applicant (``subject`` = reference, ``role`` = ``applicant``),
    an officer (``subject`` = officer name, ``role`` = an :class:`OfficerRole`) or a
    person (``subject`` = ``person:<id>``, ``role`` = ``person``), whose ``providers``
    lists the effective providers where their staff account is active and
    ``administers`` the providers they are user administrator of."""

    kind: str
    subject: str
    role: str
    providers: tuple[str, ...] = ()
    administers: tuple[str, ...] = ()

    @property
    def is_officer(self) -> bool:
        """True for officers of any role."""
        return self.kind == "officer"

    def require_role(self, *roles: str) -> None:
        """Raise :class:`Forbidden` unless ``role`` is one of ``roles``."""
        if self.role not in roles:
            raise Forbidden(
                f"this needs the role {' or '.join(roles)}; you are {self.role}",
                code="role_not_allowed",
            )


def create_officer(
    session: Session,
    name: str,
    role: OfficerRole,
    password: str,
    *,
    now: dt.datetime,
    actor: str = "cli",
) -> Officer:
    """Add an officer (commits).

    Raises:
        ValueError: bad name (lowercase letters, digits, ``._-``; 2-64) or a password
            shorter than 12 characters.
        OfficerExists: the name is taken.
    """
    if not OFFICER_NAME_PATTERN.match(name):
        raise ValueError("officer name must be 2-64 lowercase letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalars(select(Officer).where(Officer.name == name)).first() is not None:
        raise OfficerExists(f"officer {name!r} exists already")
    officer = Officer(
        name=name, role=role, password_hash=hash_password(password), active=True, created_at=now
    )
    session.add(officer)
    record_event(
        session, "officer.created", actor=actor, now=now, subject=name, details={"role": role.value}
    )
    session.commit()
    return officer


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def username_for_audit(username: str) -> str | None:
    """``username`` if it has the shape of a real username, else ``None``.

    The shapes: an application reference (:data:`REFERENCE_PATTERN`, ``HCP-XXXXXXXX``),
    an officer name (:data:`OFFICER_NAME_PATTERN`) or a person's email address (checked
    by ``email_validator``, no DNS lookup, at most :data:`MAX_EMAIL_LENGTH`
    characters). Anything else (spaces, punctuation, capitals in an officer name…) may
    be a password typed into the wrong field and is never recorded.
    """
    if REFERENCE_PATTERN.fullmatch(username) or OFFICER_NAME_PATTERN.fullmatch(username):
        return username
    if "@" in username and len(username) <= MAX_EMAIL_LENGTH:
        try:
            validate_email(username, check_deliverability=False)
        except EmailNotValidError:
            return None
        return username
    return None


def login(
    session: Session, username: str, password: str, *, now: dt.datetime, lifetime: dt.timedelta
) -> tuple[str, Principal]:
    """Check credentials and issue a bearer token (commits).

    Returns:
        ``(token, principal)``; the token is shown only here.

    Raises:
        InvalidCredentials: unknown user, inactive officer or wrong password. The
            ``auth.login_failed`` audit event names the username only if
            :func:`username_for_audit` accepts it (else actor ``<malformed>``, no
            subject), and never the password.
    """
    principal: Principal | None = None
    if REFERENCE_PATTERN.match(username):
        application = session.scalars(
            select(Application).where(Application.reference == username)
        ).first()
        if verify_password(application.password_hash if application else None, password):
            principal = Principal("applicant", username, "applicant")
    elif "@" in username:
        from registration.staff import check_person_login  # staff imports this module

        principal = check_person_login(session, username, password)
    else:
        officer = session.scalars(select(Officer).where(Officer.name == username)).first()
        ok = verify_password(officer.password_hash if officer else None, password)
        if ok and officer is not None and officer.active:
            principal = Principal("officer", officer.name, officer.role.value)
    if principal is None:
        shaped = username_for_audit(username)
        record_event(
            session,
            "auth.login_failed",
            actor=shaped[:128] if shaped else MALFORMED_USERNAME,
            now=now,
            subject=shaped[:128] if shaped else None,
        )
        session.commit()
        raise InvalidCredentials("username or password is wrong")
    record_event(
        session,
        "auth.login",
        actor=principal.subject,
        now=now,
        subject=principal.subject,
        details={"kind": principal.kind, "role": principal.role, "providers": principal.providers},
    )
    token = secrets.token_urlsafe(32)
    session.execute(delete(AccessToken).where(AccessToken.expires_at <= now))
    session.add(
        AccessToken(
            token_sha256=_token_hash(token),
            subject_kind=principal.kind,
            subject=principal.subject,
            role=principal.role,
            expires_at=now + lifetime,
        )
    )
    session.commit()
    return token, principal


def authenticate(session: Session, token: str | None, *, now: dt.datetime) -> Principal:
    """Resolve a bearer token to its :class:`Principal`.

    Raises:
        NotAuthenticated: missing, unknown or expired token, or a deactivated officer.
    """
    if not token:
        raise NotAuthenticated("a bearer token is required (POST /api/v1/auth/token)")
    row = session.get(AccessToken, _token_hash(token))
    if row is None or row.expires_at <= now:
        raise NotAuthenticated("the bearer token is unknown or has expired")
    if row.subject_kind == "officer":
        officer = session.scalars(select(Officer).where(Officer.name == row.subject)).first()
        if officer is None or not officer.active:
            raise NotAuthenticated("the officer account is disabled")
    if row.subject_kind == "person":
        from registration.staff import person_principal  # staff imports this module

        return person_principal(session, row.subject)
    return Principal(row.subject_kind, row.subject, row.role)
