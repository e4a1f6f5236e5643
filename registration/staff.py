"""User administrators and staff accounts: invitations, activation, people's logins,
opening and disabling staff accounts at a provider.

How a user administrator gets access
    When a reviewer approves an application, :func:`invite_user_admins` (called from
    :func:`registration.service.decide`, in the same transaction) mails each user
    administrator named in step 2 an invitation with a single-use **activation
    code** (100 random bits, the download-code format, stored only as SHA-256,
    valid :data:`ACTIVATION_VALIDITY`). :func:`activate` takes the code, the
    person's identity document number and a password (at least 12 characters,
    Argon2id). The identity number is a second factor: it must match the salted
    scrypt hash the application kept (``UserAdmin.identity_document_hash``).
    :data:`MAX_ACTIVATION_ATTEMPTS` wrong numbers (or wrong existing passwords) void
    the code; the applicant can have a new one sent (:func:`reinvite_user_admin`).
    A user administrator may activate and log in at once, but opens staff accounts
    only once the provider is **effective** (:func:`is_effective`: the status set by
    the time rule of ``registration.tasks``, 14 days after the acceptance email; it
    lapses if no certificate is collected within 60 days of acceptance).

One identity, one password
    A :class:`~registration.staff_models.Person` is identified by ``identity_key``,
    HMAC-SHA256 over the normalised Hong Kong identity card number with a
    server-side secret (:class:`StaffContext`; ``api`` reads it from
    ``EHRCA_IDENTITY_KEY_FILE``, default ``keys/identity-hmac.key``). The salted
    hash of ``user_admins`` cannot be looked up; the keyed hash can, and without the
    secret it cannot be reversed by enumerating the ~10^9 possible numbers. A
    professional opened at a second provider, or a user administrator who is also
    staff somewhere, attaches to the existing person: the login (email address)
    and password stay the same, and when the person already has a password the
    activation asks for it instead of setting a new one.

Logins
    People log in at ``POST /api/v1/auth/token`` with their email address as the
    username (references ``HCP-...`` are applicants, names without ``@`` are
    officers; see :func:`registration.accounts.login`). The token's principal has
    kind ``person``, subject ``person:<id>``, and lists the effective providers where
    the person's staff account is active (``providers``) and the providers the
    person administers (``administers``). Both are recomputed on every request, so
    disabling an account takes effect at once.

Staff accounts
    A user administrator of an effective provider opens an account with the
    professional's name, one of the 13 professions (:mod:`registration.professions`),
    the registration number (format checked per profession), the identity card
    number and an email address. A registration number belongs to one person; a
    person has one number per profession; a person has at most one account per
    provider. Disabling is per provider. A new person gets an activation code by
    mail; a person who already has a password is told an account was added.

Every change, activation and login is recorded with :func:`ca.audit.record_event`,
never with passwords, codes or identity numbers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, EmailStr, Field, StringConstraints
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.errors import ErrorCategory
from issuance.codes import generate_download_code, hash_download_code
from issuance.mail import enqueue_mail
from registration import rules
from registration.accounts import MIN_PASSWORD_LENGTH, REFERENCE_PATTERN, Principal
from registration.errors import Forbidden, NotAuthenticated, RegistrationError
from registration.models import Application, ApplicationStatus, UserAdmin
from registration.passwords import hash_password, verify_password
from registration.professions import PROFESSIONS, Profession
from registration.schemas import Strict
from registration.staff_models import (
    ActivationCode,
    ActivationPurpose,
    Person,
    ProfessionalRegistration,
    StaffAccount,
    StaffAccountStatus,
    UserAdminLogin,
)

#: A registration takes effect this long after the acceptance email at the earliest
#: (DESIGN.md; the rule itself is ``registration.tasks``'), quoted in invitations.
EFFECTIVE_AFTER = rules.EFFECTIVE_AFTER
#: How long an activation code (invitation or new staff account) can be used.
ACTIVATION_VALIDITY = dt.timedelta(days=60)
#: Wrong identity numbers or passwords given with one code before it is void.
MAX_ACTIVATION_ATTEMPTS = 5
#: Smallest accepted identity secret (bytes).
MIN_IDENTITY_SECRET_BYTES = 32
PERSON_KIND = "person"
PERSON_ROLE = "person"
_SUBJECT_PREFIX = "person:"
_IDENTITY_KEY_LABEL = b"ehrca identity v1\x00"


# --------------------------------------------------------------------------- errors


class StaffError(RegistrationError):
    """Base of refusals about user administrators and staff accounts."""

    code = "staff_error"


class ProviderNotFound(StaffError):
    """No provider with that reference administered by the caller (others' providers
    are reported alike, so they cannot be probed)."""

    code = "provider_not_found"
    category = ErrorCategory.NOT_FOUND


class ProviderNotEffective(StaffError):
    """Staff accounts are opened, changed and used only at an effective provider."""

    code = "provider_not_effective"
    category = ErrorCategory.CONFLICT


class StaffAccountNotFound(StaffError):
    """No such staff account at that provider."""

    code = "staff_account_not_found"
    category = ErrorCategory.NOT_FOUND


class StaffAccountDisabled(StaffError):
    """The caller's account at that provider is disabled."""

    code = "staff_account_disabled"
    category = ErrorCategory.FORBIDDEN


class StaffAccountExists(StaffError):
    """The person already has an account at this provider (``detail``: its id and
    status)."""

    code = "staff_account_exists"
    category = ErrorCategory.CONFLICT


class ProfessionUnknown(StaffError):
    """Not one of the 13 professions (``detail['professions']`` lists them)."""

    code = "profession_unknown"
    category = ErrorCategory.INVALID


class RegistrationNumberInvalid(StaffError):
    """The registration number does not fit its profession's format."""

    code = "registration_number_invalid"
    category = ErrorCategory.INVALID


class RegistrationNumberConflict(StaffError):
    """``registration_number_in_use``: the number belongs to another identity;
    ``registration_number_mismatch``: this identity has another number in that
    profession."""

    code = "registration_number_in_use"
    category = ErrorCategory.CONFLICT


class EmailInUse(StaffError):
    """The email address is the login of another identity."""

    code = "email_in_use"
    category = ErrorCategory.CONFLICT


class ActivationCodeInvalid(StaffError):
    """Unknown activation code."""

    code = "activation_code_invalid"
    category = ErrorCategory.FORBIDDEN


class ActivationCodeUsed(StaffError):
    """The activation code was used already (single use)."""

    code = "activation_code_used"
    category = ErrorCategory.CONFLICT


class ActivationCodeExpired(StaffError):
    """The activation code is past its validity or was replaced by a new one."""

    code = "activation_code_expired"
    category = ErrorCategory.GONE


class ActivationCodeVoid(StaffError):
    """Too many wrong identity numbers or passwords were given with this code."""

    code = "activation_code_void"
    category = ErrorCategory.CONFLICT


class IdentityMismatch(StaffError):
    """The identity document number is not the one of the invited person."""

    code = "identity_document_mismatch"
    category = ErrorCategory.FORBIDDEN


class ExistingPasswordMismatch(StaffError):
    """The person already has a login, and the password given is not its password."""

    code = "existing_password_mismatch"
    category = ErrorCategory.FORBIDDEN


class PasswordRejected(StaffError):
    """The new password is too short."""

    code = "password_too_short"
    category = ErrorCategory.INVALID


class UserAdminActive(StaffError):
    """The user administrator has activated the invitation already."""

    code = "user_admin_already_active"
    category = ErrorCategory.CONFLICT


class UserAdminNotFound(StaffError):
    """The application has no user administrator with that number."""

    code = "user_admin_not_found"
    category = ErrorCategory.NOT_FOUND


class ConcurrentChange(StaffError):
    """A concurrent request created the same person, registration or account; retry."""

    code = "concurrent_change"
    category = ErrorCategory.CONFLICT


class ProviderNotAccepted(StaffError):
    """Invitations exist only for approved or effective applications."""

    code = "application_not_accepted"
    category = ErrorCategory.CONFLICT


# --------------------------------------------------------------------------- inputs


class ActivationIn(Strict):
    """``POST /api/v1/people/activate``: the mailed code, the person's identity card
    number (second factor) and a password of 12+ characters (or the existing one)."""

    activation_code: str = Field(min_length=1, max_length=64)
    identity_document: Annotated[str, AfterValidator(rules.check_hkid)]
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=128)


class StaffAccountIn(Strict):
    """Open a staff account: the professional's name, profession code, registration
    number (checked per profession by the service, with a specific error code),
    identity card number and email address (the login of a new person)."""

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
        AfterValidator(rules.check_single_line),
    ]
    profession: str = Field(max_length=48)
    registration_number: str = Field(min_length=1, max_length=32)
    identity_document: Annotated[str, AfterValidator(rules.check_hkid)]
    email: EmailStr


@dataclass(frozen=True, slots=True)
class StaffContext:
    """What these use cases need besides the database (built by ``api``).

    Attributes:
        identity_secret: the HMAC key of identity keys (at least 32 bytes).
        base_url: public base URL for links in mail.
        activation_validity: lifetime of activation codes.
    """

    identity_secret: bytes
    base_url: str
    activation_validity: dt.timedelta = ACTIVATION_VALIDITY

    def __post_init__(self) -> None:
        if len(self.identity_secret) < MIN_IDENTITY_SECRET_BYTES:
            raise ValueError(f"identity secret must have {MIN_IDENTITY_SECRET_BYTES}+ bytes")


@dataclass(frozen=True, slots=True)
class Activated:
    """Result of :func:`activate`: the person, why the code was sent, whether the
    person's password was set now (False: an existing login was confirmed)."""

    person: Person
    purpose: ActivationPurpose
    password_set: bool


# --------------------------------------------------------------------------- pure helpers


def is_effective(application: Application) -> bool:
    """True when the provider's registration is effective: ``status == effective``.

    The ``approved → effective`` transition is the time rule of
    ``registration.tasks`` (14 days after the acceptance email, whether or not a
    certificate has been collected), so this module does not repeat the rule: an approved
    provider past its 14 days waits for the next task run. A withdrawn or lapsed
    registration is not effective, and neither are its staff accounts.
    """
    return application.status is ApplicationStatus.EFFECTIVE


def identity_key(secret: bytes, identity_document: str) -> str:
    """HMAC-SHA256 (hex) of the normalised identity card number under ``secret``.

    Raises:
        ValueError: not a valid Hong Kong identity card number
            (:func:`registration.rules.check_hkid`).
    """
    normalised = rules.check_hkid(identity_document)
    return hmac.new(secret, _IDENTITY_KEY_LABEL + normalised.encode(), hashlib.sha256).hexdigest()


def verify_identity_hash(stored: str, identity_document: str) -> bool:
    """True if ``identity_document`` matches a salted scrypt hash
    ``scrypt$N$r$p$salt$digest`` (as made by ``registration.service``); constant time."""
    try:
        normalised = rules.check_hkid(identity_document)
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = bytes.fromhex(digest)
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(
            normalised.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def person_subject(person_id: int) -> str:
    """The principal subject of person ``person_id`` (``person:<id>``)."""
    return f"{_SUBJECT_PREFIX}{person_id}"


def person_id_of(principal: Principal) -> int | None:
    """The person id behind ``principal``, or None if it is not a person."""
    if principal.kind != PERSON_KIND or not principal.subject.startswith(_SUBJECT_PREFIX):
        return None
    try:
        return int(principal.subject.removeprefix(_SUBJECT_PREFIX))
    except ValueError:
        return None


def normalise_email(email: str) -> str:
    """Logins compare email addresses stripped and lower-cased."""
    return email.strip().lower()


def _display_name(application: Application) -> str:
    if application.language != "en" and application.name_zh:
        return application.name_zh
    return application.name_en or application.reference


# --------------------------------------------------------------------------- logins


def _memberships(session: Session, person_id: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    staff_at = session.scalars(
        select(Application)
        .join(StaffAccount, StaffAccount.application_id == Application.id)
        .where(StaffAccount.person_id == person_id)
        .where(StaffAccount.status == StaffAccountStatus.ACTIVE)
    ).all()
    administered = session.scalars(
        select(Application.reference)
        .join(UserAdmin, UserAdmin.application_id == Application.id)
        .join(UserAdminLogin, UserAdminLogin.user_admin_id == UserAdmin.id)
        .where(UserAdminLogin.person_id == person_id)
    ).all()
    providers = sorted(a.reference for a in staff_at if is_effective(a))
    return tuple(providers), tuple(sorted(set(administered)))


def person_principal(session: Session, subject: str) -> Principal:
    """The :class:`Principal` of the person ``subject`` (``person:<id>``) with the
    providers listed as they are now.

    Raises:
        NotAuthenticated: no such person, or the person has no password.
    """
    person_id = person_id_of(Principal(PERSON_KIND, subject, PERSON_ROLE))
    person = session.get(Person, person_id) if person_id is not None else None
    if person is None or person.password_hash is None:
        raise NotAuthenticated("the login is not active")
    providers, administers = _memberships(session, person.id)
    return Principal(PERSON_KIND, subject, PERSON_ROLE, providers, administers)


def check_person_login(session: Session, username: str, password: str) -> Principal | None:
    """The principal of the person whose login (email) is ``username`` if
    ``password`` is theirs, else None. Takes the same time for unknown logins."""
    person = session.scalars(
        select(Person).where(Person.email == normalise_email(username))
    ).first()
    ok = verify_password(person.password_hash if person else None, password)
    if not ok or person is None:
        return None
    return person_principal(session, person_subject(person.id))


# --------------------------------------------------------------------------- invitations


def _new_code(
    session: Session,
    purpose: ActivationPurpose,
    *,
    now: dt.datetime,
    validity: dt.timedelta,
    user_admin_id: int | None = None,
    person_id: int | None = None,
) -> tuple[str, ActivationCode]:
    code = generate_download_code()
    row = ActivationCode(
        code_sha256=hash_download_code(code),
        purpose=purpose,
        user_admin_id=user_admin_id,
        person_id=person_id,
        created_at=now,
        expires_at=now + validity,
        used_at=None,
        failed_attempts=0,
    )
    session.add(row)
    return code, row


def _send_invitation(
    session: Session,
    application: Application,
    admin: UserAdmin,
    *,
    now: dt.datetime,
    base_url: str,
    validity: dt.timedelta,
    actor: str,
) -> None:
    code, row = _new_code(
        session, ActivationPurpose.USER_ADMIN, now=now, validity=validity, user_admin_id=admin.id
    )
    accepted = application.accepted_at or now
    enqueue_mail(
        session,
        recipient=admin.email,
        template="user_admin_invitation",
        language=application.language,
        context={
            "name": admin.name,
            "email": admin.email,
            "provider_name": _display_name(application),
            "reference": application.reference,
            "code": code,
            "expires_on": (now + validity).date().isoformat(),
            "effective_on": (accepted + EFFECTIVE_AFTER).date().isoformat(),
            "base_url": base_url,
        },
        now=now,
    )
    session.flush()
    record_event(
        session,
        "user_admin.invited",
        actor=actor,
        now=now,
        subject=application.reference,
        details={"user_admin_id": admin.id, "activation_code_id": row.id},
    )


def invite_user_admins(
    session: Session,
    application: Application,
    *,
    now: dt.datetime,
    base_url: str,
    validity: dt.timedelta = ACTIVATION_VALIDITY,
    actor: str = "system",
) -> int:
    """Mail an invitation with an activation code to each user administrator of
    ``application`` who has neither activated nor an unexpired unused code. The
    caller commits (approval: with the decision and its other mails).

    Returns:
        How many invitations were queued.
    """
    sent = 0
    for admin in application.user_admins:
        if session.get(UserAdminLogin, admin.id) is not None:
            continue
        pending = session.scalars(
            select(ActivationCode.id).where(
                ActivationCode.user_admin_id == admin.id,
                ActivationCode.used_at.is_(None),
                ActivationCode.expires_at > now,
                ActivationCode.failed_attempts < MAX_ACTIVATION_ATTEMPTS,
            )
        ).first()
        if pending is not None:
            continue
        _send_invitation(
            session, application, admin, now=now, base_url=base_url, validity=validity, actor=actor
        )
        sent += 1
    return sent


def reinvite_user_admin(
    session: Session,
    application: Application,
    number: int,
    *,
    actor: str,
    now: dt.datetime,
    base_url: str,
    validity: dt.timedelta = ACTIVATION_VALIDITY,
) -> None:
    """Send user administrator ``number`` (1-based, step 2 order) a new invitation;
    earlier unused codes expire now (commits).

    Raises:
        ProviderNotAccepted: the application is not approved or effective.
        UserAdminNotFound: no such user administrator.
        UserAdminActive: the invitation was activated already.
    """
    if application.status not in (ApplicationStatus.APPROVED, ApplicationStatus.EFFECTIVE):
        raise ProviderNotAccepted(
            f"user administrators are invited once the application is approved; it is "
            f"{application.status.value}"
        )
    if not 1 <= number <= len(application.user_admins):
        raise UserAdminNotFound(f"application {application.reference} has no user admin {number}")
    admin = application.user_admins[number - 1]
    if session.get(UserAdminLogin, admin.id) is not None:
        raise UserAdminActive("this user administrator has activated the invitation already")
    session.execute(
        update(ActivationCode)
        .where(ActivationCode.user_admin_id == admin.id, ActivationCode.used_at.is_(None))
        .where(ActivationCode.expires_at > now)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )
    _send_invitation(
        session, application, admin, now=now, base_url=base_url, validity=validity, actor=actor
    )
    session.commit()


# --------------------------------------------------------------------------- activation


def _refuse_attempt(
    session: Session, row: ActivationCode, error: StaffError, *, now: dt.datetime
) -> StaffError:
    # Increment in the database, not in Python: concurrent wrong guesses must each count
    # towards MAX_ACTIVATION_ATTEMPTS (a read-modify-write would let some go uncounted).
    attempts = session.execute(
        update(ActivationCode)
        .where(ActivationCode.id == row.id)
        .values(failed_attempts=ActivationCode.failed_attempts + 1)
        .returning(ActivationCode.failed_attempts)
    ).scalar_one()
    record_event(
        session,
        "person.activation_failed",
        actor="anonymous",
        now=now,
        subject=None,
        details={
            "activation_code_id": row.id,
            "reason": error.code,
            "attempts": attempts,
        },
    )
    session.commit()
    return error


def activate(
    session: Session,
    ctx: StaffContext,
    *,
    code: str,
    identity_document: str,
    password: str,
    now: dt.datetime,
) -> Activated:
    """Use an activation code: check the identity number, set the person's password
    (or confirm the existing one), link a user administrator to the person (commits).

    Raises:
        ActivationCodeInvalid: unknown code.
        ActivationCodeUsed: used already. ActivationCodeVoid: too many failed attempts.
        ActivationCodeExpired: past its validity or replaced.
        PasswordRejected: a new password shorter than 12 characters.
        IdentityMismatch: the identity number is not the invited person's (counted).
        ExistingPasswordMismatch: the identity already has a login and ``password`` is
            not its password (counted).
        EmailInUse: the invited email address is another identity's login.
    """
    row = session.scalars(
        select(ActivationCode).where(ActivationCode.code_sha256 == hash_download_code(code))
    ).first()
    if row is None:
        raise ActivationCodeInvalid("the activation code is not valid")
    if row.used_at is not None:
        raise ActivationCodeUsed("the activation code has been used already")
    if row.failed_attempts >= MAX_ACTIVATION_ATTEMPTS:
        raise ActivationCodeVoid(
            "too many failed attempts with this activation code; ask for a new one"
        )
    if now >= row.expires_at:
        raise ActivationCodeExpired("the activation code has expired; ask for a new one")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    try:
        key = identity_key(ctx.identity_secret, identity_document)
    except ValueError:
        key = ""
    admin: UserAdmin | None = None
    if row.purpose is ActivationPurpose.USER_ADMIN:
        admin = session.get(UserAdmin, row.user_admin_id)
        matches = admin is not None and verify_identity_hash(
            admin.identity_document_hash, identity_document
        )
    else:
        invited = session.get(Person, row.person_id)
        matches = (
            invited is not None and bool(key) and hmac.compare_digest(invited.identity_key, key)
        )
    if not matches:
        raise _refuse_attempt(
            session,
            row,
            IdentityMismatch("the identity document number does not match the invitation"),
            now=now,
        )
    person = session.scalars(select(Person).where(Person.identity_key == key)).first()
    if (
        person is not None
        and person.password_hash is not None
        and not verify_password(person.password_hash, password)
    ):
        raise _refuse_attempt(
            session,
            row,
            ExistingPasswordMismatch(
                "you already have an eHR login: give its password to add this account"
            ),
            now=now,
        )
    new_identity = person is None
    if person is None:
        assert admin is not None  # staff codes always point at an existing person
        email = normalise_email(admin.email)
        if session.scalars(select(Person.id).where(Person.email == email)).first() is not None:
            raise EmailInUse(
                "this email address is the login of another person; ask the applicant to "
                "contact the registration office"
            )
        person = Person(
            identity_key=key,
            identity_document_last4=rules.check_hkid(identity_document)[-4:],
            email=email,
            password_hash=None,
            created_at=now,
            activated_at=None,
        )
        session.add(person)
        try:
            session.flush()
        except IntegrityError as exc:  # the same identity activated at the same moment
            session.rollback()
            raise ConcurrentChange("a concurrent activation created this login; retry") from exc
    password_set = person.password_hash is None
    if password_set:
        person.password_hash = hash_password(password)
        person.activated_at = now
    if admin is not None:
        if session.get(UserAdminLogin, admin.id) is not None:
            raise ActivationCodeUsed("this invitation has been activated already")
        session.add(UserAdminLogin(user_admin_id=admin.id, person_id=person.id, activated_at=now))
    claimed = session.execute(
        update(ActivationCode)
        .where(ActivationCode.id == row.id, ActivationCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        session.rollback()
        raise ActivationCodeUsed("the activation code has been used already")
    if password_set:
        # Other codes mailed for this person (staff accounts at other providers) are
        # spent: the person has a password now.
        session.execute(
            update(ActivationCode)
            .where(ActivationCode.person_id == person.id, ActivationCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
    record_event(
        session,
        "person.activated",
        actor=person_subject(person.id),
        now=now,
        subject=person_subject(person.id),
        details={
            "purpose": row.purpose.value,
            "activation_code_id": row.id,
            "user_admin_id": admin.id if admin else None,
            "new_identity": new_identity,
            "new_login": password_set,
        },
    )
    session.commit()
    return Activated(person, row.purpose, password_set)


# --------------------------------------------------------------------------- staff accounts


def _require_person(principal: Principal) -> int:
    person_id = person_id_of(principal)
    if person_id is None:
        raise Forbidden(
            "only a provider's user administrators and staff can do this", code="person_only"
        )
    return person_id


def administered_provider(session: Session, principal: Principal, reference: str) -> Application:
    """The application ``reference`` if ``principal`` is one of its activated user
    administrators.

    Raises:
        registration.errors.Forbidden: ``person_only``, the caller is not a person.
        ProviderNotFound: unknown reference or not administered by the caller.
    """
    person_id = _require_person(principal)
    if not REFERENCE_PATTERN.fullmatch(reference):
        raise ProviderNotFound(f"no provider {reference!r} administered by you")
    application = session.scalars(
        select(Application)
        .join(UserAdmin, UserAdmin.application_id == Application.id)
        .join(UserAdminLogin, UserAdminLogin.user_admin_id == UserAdmin.id)
        .where(Application.reference == reference, UserAdminLogin.person_id == person_id)
    ).first()
    if application is None:
        raise ProviderNotFound(f"no provider {reference} administered by you")
    return application


def require_effective(application: Application) -> None:
    """Raise :class:`ProviderNotEffective` unless :func:`is_effective`; for an approved
    provider ``detail.effective_at_earliest`` is 14 days after acceptance."""
    if not is_effective(application):
        earliest = (
            (application.accepted_at + EFFECTIVE_AFTER).isoformat()
            if application.accepted_at and application.status is ApplicationStatus.APPROVED
            else None
        )
        raise ProviderNotEffective(
            f"the registration of {application.reference} is not effective "
            f"(it is {application.status.value})",
            provider_status=application.status.value,
            effective_at_earliest=earliest,
        )


def check_profession(profession: str, registration_number: str) -> tuple[Profession, str]:
    """The profession and the normalised registration number.

    Raises:
        ProfessionUnknown: not one of the 13 codes.
        RegistrationNumberInvalid: the number does not fit the profession's format.
    """
    found = PROFESSIONS.get(profession)
    if found is None:
        raise ProfessionUnknown(
            f"unknown profession {profession[:48]!r}", professions=list(PROFESSIONS)
        )
    try:
        return found, found.check_registration_number(registration_number)
    except ValueError as exc:
        raise RegistrationNumberInvalid(
            str(exc), profession=found.code, examples=[f.example for f in found.formats]
        ) from exc


def open_staff_account(
    session: Session,
    ctx: StaffContext,
    principal: Principal,
    reference: str,
    data: StaffAccountIn,
    *,
    now: dt.datetime,
) -> StaffAccount:
    """Open a staff account at provider ``reference`` (commits, with its mail).

    The professional is found by identity key or created (without a password: an
    activation code is mailed to ``data.email``). A known person keeps their login:
    ``data.email`` is then ignored and the notice (with a code only if they have no
    password yet) goes to the login address.

    Raises:
        registration.errors.Forbidden: ``person_only``.
        ProviderNotFound: not a provider the caller administers.
        ProviderNotEffective: the provider is not effective.
        ProfessionUnknown, RegistrationNumberInvalid: bad profession or number.
        RegistrationNumberConflict: ``registration_number_in_use`` (another identity's
            number) or ``registration_number_mismatch`` (this identity has another
            number in that profession).
        StaffAccountExists: the person has an account at this provider.
        EmailInUse: a new person's email is another identity's login.
        ConcurrentChange: a concurrent request created the same rows.
    """
    application = administered_provider(session, principal, reference)
    require_effective(application)
    profession, number = check_profession(data.profession, data.registration_number)
    key = identity_key(ctx.identity_secret, data.identity_document)
    person = session.scalars(select(Person).where(Person.identity_key == key)).first()
    registration = session.scalars(
        select(ProfessionalRegistration).where(
            ProfessionalRegistration.profession == profession.code,
            ProfessionalRegistration.registration_number == number,
        )
    ).first()
    if registration is not None and (person is None or registration.person_id != person.id):
        raise RegistrationNumberConflict(
            f"{profession.name_en} registration number {number} belongs to another person"
        )
    if person is not None:
        own = session.scalars(
            select(ProfessionalRegistration).where(
                ProfessionalRegistration.person_id == person.id,
                ProfessionalRegistration.profession == profession.code,
            )
        ).first()
        if own is not None and own.registration_number != number:
            raise RegistrationNumberConflict(
                f"this person is registered as {profession.name_en} under another number",
                code="registration_number_mismatch",
            )
        registration = own
        existing = session.scalars(
            select(StaffAccount).where(
                StaffAccount.application_id == application.id,
                StaffAccount.person_id == person.id,
            )
        ).first()
        if existing is not None:
            raise StaffAccountExists(
                "this person already has an account at this provider",
                staff_account_id=existing.id,
                account_status=existing.status.value,
            )
    new_identity = person is None
    if person is None:
        email = normalise_email(str(data.email))
        if session.scalars(select(Person.id).where(Person.email == email)).first() is not None:
            raise EmailInUse("this email address is the login of another person")
        person = Person(
            identity_key=key,
            identity_document_last4=rules.check_hkid(data.identity_document)[-4:],
            email=email,
            password_hash=None,
            created_at=now,
            activated_at=None,
        )
        session.add(person)
    try:
        session.flush()
        if registration is None:
            registration = ProfessionalRegistration(
                person_id=person.id,
                profession=profession.code,
                registration_number=number,
                created_at=now,
            )
            session.add(registration)
            session.flush()
        account = StaffAccount(
            application_id=application.id,
            person_id=person.id,
            registration_id=registration.id,
            name=data.name,
            status=StaffAccountStatus.ACTIVE,
            opened_at=now,
            opened_by=principal.subject,
            disabled_at=None,
            disabled_by=None,
        )
        session.add(account)
        session.flush()
    except IntegrityError as exc:  # a concurrent request opened the same account
        session.rollback()
        raise ConcurrentChange(
            "a concurrent request opened this person, registration or account; retry"
        ) from exc
    code: str | None = None
    if person.password_hash is None:
        code, _row = _new_code(
            session,
            ActivationPurpose.STAFF,
            now=now,
            validity=ctx.activation_validity,
            person_id=person.id,
        )
    enqueue_mail(
        session,
        recipient=person.email,
        template="staff_account_opened",
        language=application.language,
        context={
            "name": data.name,
            "email": person.email,
            "provider_name": _display_name(application),
            "profession": profession.name(application.language),
            "registration_number": number,
            "code": code,
            "expires_on": (now + ctx.activation_validity).date().isoformat(),
            "base_url": ctx.base_url,
        },
        now=now,
    )
    record_event(
        session,
        "staff.account_opened",
        actor=principal.subject,
        now=now,
        subject=application.reference,
        details={
            "staff_account_id": account.id,
            "person_id": person.id,
            "profession": profession.code,
            "registration_number": number,
            "new_identity": new_identity,
        },
    )
    session.commit()
    return account


def _account_at(session: Session, application: Application, account_id: int) -> StaffAccount:
    account = session.get(StaffAccount, account_id)
    if account is None or account.application_id != application.id:
        raise StaffAccountNotFound(
            f"provider {application.reference} has no staff account {account_id}"
        )
    return account


def disable_staff_account(
    session: Session, principal: Principal, reference: str, account_id: int, *, now: dt.datetime
) -> StaffAccount:
    """Disable staff account ``account_id`` at provider ``reference`` (commits). The
    person's accounts at other providers stay as they are. Disabling a disabled
    account changes nothing.

    Raises:
        registration.errors.Forbidden: ``person_only``.
        ProviderNotFound: not a provider the caller administers.
        ProviderNotEffective: the provider is not effective.
        StaffAccountNotFound: no such account at this provider.
    """
    application = administered_provider(session, principal, reference)
    require_effective(application)
    account = _account_at(session, application, account_id)
    if account.status is StaffAccountStatus.DISABLED:
        return account
    account.status = StaffAccountStatus.DISABLED
    account.disabled_at = now
    account.disabled_by = principal.subject
    record_event(
        session,
        "staff.account_disabled",
        actor=principal.subject,
        now=now,
        subject=application.reference,
        details={"staff_account_id": account.id, "person_id": account.person_id},
    )
    session.commit()
    return account


def list_staff_accounts(
    session: Session, principal: Principal, reference: str
) -> tuple[Application, list[StaffAccount]]:
    """The provider and its staff accounts, oldest first (user administrators).

    Raises:
        registration.errors.Forbidden: ``person_only``.
        ProviderNotFound: not a provider the caller administers.
    """
    application = administered_provider(session, principal, reference)
    accounts = session.scalars(
        select(StaffAccount)
        .where(StaffAccount.application_id == application.id)
        .order_by(StaffAccount.id)
    ).all()
    return application, list(accounts)


def active_staff_account(session: Session, principal: Principal, reference: str) -> StaffAccount:
    """The caller's own account at provider ``reference``, if it may act there: the
    check every staff action at a provider starts with.

    Raises:
        registration.errors.Forbidden: ``person_only``.
        StaffAccountNotFound: the caller has no account there (or no such provider).
        StaffAccountDisabled: the account is disabled.
        ProviderNotEffective: the provider is not (or no longer) effective.
    """
    person_id = _require_person(principal)
    account = None
    if REFERENCE_PATTERN.fullmatch(reference):
        account = session.scalars(
            select(StaffAccount)
            .join(Application, Application.id == StaffAccount.application_id)
            .where(Application.reference == reference, StaffAccount.person_id == person_id)
        ).first()
    if account is None:
        raise StaffAccountNotFound(f"you have no staff account at {reference!r}")
    if account.status is StaffAccountStatus.DISABLED:
        raise StaffAccountDisabled(f"your staff account at {reference} is disabled")
    application = session.get(Application, account.application_id)
    assert application is not None
    require_effective(application)
    return account


@dataclass(frozen=True, slots=True)
class Membership:
    """One provider in a person's overview: staff account and/or user administrator."""

    reference: str
    provider_name_en: str | None
    provider_name_zh: str | None
    effective: bool
    user_admin: bool
    staff_account_id: int | None
    staff_status: str | None
    profession: str | None
    registration_number: str | None


def memberships(session: Session, principal: Principal) -> list[Membership]:
    """Every provider where the person has a staff account (active or disabled) or is
    an activated user administrator, by reference (empty for non-persons)."""
    person_id = person_id_of(principal)
    if person_id is None:
        return []
    apps: dict[int, Application] = {}
    accounts: dict[int, StaffAccount] = {}
    for account, application in session.execute(
        select(StaffAccount, Application)
        .join(Application, Application.id == StaffAccount.application_id)
        .where(StaffAccount.person_id == person_id)
    ).all():
        accounts[application.id] = account
        apps[application.id] = application
    admin_ids: set[int] = set()
    for application in session.scalars(
        select(Application)
        .join(UserAdmin, UserAdmin.application_id == Application.id)
        .join(UserAdminLogin, UserAdminLogin.user_admin_id == UserAdmin.id)
        .where(UserAdminLogin.person_id == person_id)
    ):
        admin_ids.add(application.id)
        apps[application.id] = application
    result = []
    for app_id, application in sorted(apps.items(), key=lambda item: item[1].reference):
        found = accounts.get(app_id)
        result.append(
            Membership(
                reference=application.reference,
                provider_name_en=application.name_en,
                provider_name_zh=application.name_zh,
                effective=is_effective(application),
                user_admin=app_id in admin_ids,
                staff_account_id=found.id if found else None,
                staff_status=found.status.value if found else None,
                profession=found.registration.profession if found else None,
                registration_number=found.registration.registration_number if found else None,
            )
        )
    return result
