"""registration.staff against a real database (SQLite or PostgreSQL), without the CA:
invitations, activation and its refusals, people's logins, staff-account rules, and
the audit trail (which never holds a code, a password or an identity number)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ca.audit import AuditEvent, verify_chain
from db.session import create_db_engine, create_session_factory
from issuance.models import OutboxMail
from registration import rules, service, staff, support
from registration.accounts import Principal, authenticate, login
from registration.errors import Forbidden, InvalidCredentials, NotAuthenticated
from registration.models import Application, ApplicationStatus, UserAdmin
from registration.staff_models import (
    ActivationCode,
    Person,
    ProfessionalRegistration,
    StaffAccount,
    StaffAccountStatus,
    UserAdminLogin,
)
from tests.conftest import START

SECRET = bytes(range(32))
CTX = staff.StaffContext(identity_secret=SECRET, base_url="http://127.0.0.1:8000")
PASSWORD = "admin-password-2026"
STAFF_PASSWORD = "doctor-password-2026"
CODE = re.compile(r"(?:Activation code|啟用碼|启用码)：?:? *([0-9A-Z-]{24})")


def hkid(prefix: str, digits: str) -> str:
    """A valid HKID ``X123456(c)`` (check digit: weights 9..2 modulo 11, written here
    independently of ``registration.rules``)."""
    padded = prefix.rjust(2)
    values = [36 if c == " " else ord(c) - ord("A") + 10 for c in padded] + [int(d) for d in digits]
    check = (11 - sum(v * w for v, w in zip(values, range(9, 1, -1), strict=True)) % 11) % 11
    return f"{prefix}{digits}({'A' if check == 10 else check})"


ADMIN_ID = "A123456(3)"  # Dr Chan of the samples
OTHER_ID = hkid("B", "234567")
DOCTOR_ID = hkid("C", "345678")


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = create_db_engine(database_url)
    with create_session_factory(engine)() as s:
        yield s
    engine.dispose()


_counter = iter(range(10_000_000, 99_999_999))


def make_provider(
    session: Session,
    admins: list[tuple[str, str, str]],
    *,
    status: ApplicationStatus = ApplicationStatus.EFFECTIVE,
    language: str = "en",
) -> Application:
    """An application in ``status`` with user admins ``(name, identity, email)``,
    accepted at START."""
    application = Application(
        reference=f"HCP-{next(_counter):08d}",
        password_hash="unused",
        contact_email="clinic@example.org",
        language=language,
        status=status,
        name_en="Dr Chan Tai Man Clinic",
        name_zh="陳大文醫生醫務所",
        created_at=START,
        accepted_at=START,
        user_admins=[
            UserAdmin(
                name=name,
                identity_document_hash=service._hash_identity(rules.check_hkid(identity)),
                identity_document_last4=rules.check_hkid(identity)[-4:],
                email=email,
                phone="91234567",
                position="Proprietor",
            )
            for name, identity, email in admins
        ],
    )
    session.add(application)
    session.commit()
    return application


def sent_codes(session: Session, recipient: str) -> list[str]:
    """Activation codes mailed to ``recipient``, oldest first."""
    bodies = session.scalars(
        select(OutboxMail.body).where(OutboxMail.recipient == recipient).order_by(OutboxMail.id)
    ).all()
    return [m.group(1) for body in bodies for m in CODE.finditer(body)]


def invite(session: Session, application: Application) -> None:
    staff.invite_user_admins(session, application, now=START, base_url=CTX.base_url)
    session.commit()


def activated_admin(session: Session, application: Application, email: str) -> Principal:
    """Invite, activate with ADMIN_ID and PASSWORD, and return the principal."""
    invite(session, application)
    result = staff.activate(
        session,
        CTX,
        code=sent_codes(session, email)[-1],
        identity_document=ADMIN_ID,
        password=PASSWORD,
        now=START,
    )
    return staff.person_principal(session, staff.person_subject(result.person.id))


def doctor(
    number: str = "M12345", identity: str = DOCTOR_ID, email: str = "doc@example.org"
) -> staff.StaffAccountIn:
    return staff.StaffAccountIn(
        name="LAU Ming",
        profession="doctor",
        registration_number=number,
        identity_document=identity,
        email=email,
    )


# --------------------------------------------------------------------------- pure parts


def test_identity_key_is_keyed_and_normalised() -> None:
    key = staff.identity_key(SECRET, "A123456(3)")
    assert key == staff.identity_key(SECRET, " a1234563 ")
    assert len(key) == 64 and "A123456" not in key
    assert key != staff.identity_key(bytes(32), "A123456(3)")
    assert key != staff.identity_key(SECRET, OTHER_ID)
    with pytest.raises(ValueError, match="check digit"):
        staff.identity_key(SECRET, "A123456(4)")


def test_salted_identity_hash_verifies_only_the_same_number() -> None:
    stored = service._hash_identity("A1234563")
    assert staff.verify_identity_hash(stored, "A123456(3)")
    assert not staff.verify_identity_hash(stored, OTHER_ID)
    assert not staff.verify_identity_hash(stored, "not an id")
    assert not staff.verify_identity_hash("argon2$x", "A123456(3)")


def test_is_effective_follows_the_status() -> None:
    for status in ApplicationStatus:
        application = Application(status=status, accepted_at=START - dt.timedelta(days=30))
        assert staff.is_effective(application) is (status is ApplicationStatus.EFFECTIVE)


def test_windows_match_the_time_rules() -> None:
    assert staff.EFFECTIVE_AFTER == rules.EFFECTIVE_AFTER == dt.timedelta(days=14)
    assert support.SUPPORT_WINDOW == rules.EFFECTIVE_AFTER


# --------------------------------------------------------------------------- invitations


def test_invitation_per_user_admin_stored_hashed_and_sent_once(session: Session) -> None:
    application = make_provider(
        session,
        [("CHAN Tai Man", ADMIN_ID, "taiman@example.org"), ("HO Wing", OTHER_ID, "ho@example.org")],
        status=ApplicationStatus.APPROVED,
        language="zh-Hant",
    )
    invite(session, application)
    invite(session, application)  # idempotent: pending codes are not replaced
    mails = session.scalars(select(OutboxMail).order_by(OutboxMail.id)).all()
    assert [m.recipient for m in mails] == ["taiman@example.org", "ho@example.org"]
    assert mails[0].subject == "電子健康紀錄：閣下獲委任為陳大文醫生醫務所的使用者管理員"
    assert "2026-12-13" in mails[0].body  # effective 14 days after acceptance at the earliest
    assert application.reference not in mails[0].subject
    code = sent_codes(session, "taiman@example.org")[0]
    rows = session.scalars(select(ActivationCode)).all()
    assert len(rows) == 2
    assert all(code.replace("-", "") not in r.code_sha256 for r in rows)
    assert rows[0].expires_at == START + dt.timedelta(days=60)


def test_activation_refusals_and_success(session: Session) -> None:
    application = make_provider(
        session,
        [("CHAN Tai Man", ADMIN_ID, "taiman@example.org")],
        status=ApplicationStatus.APPROVED,
    )
    invite(session, application)
    code = sent_codes(session, "taiman@example.org")[0]

    def attempt(**kw: str) -> staff.Activated:
        args = {"code": code, "identity_document": ADMIN_ID, "password": PASSWORD} | kw
        return staff.activate(session, CTX, now=START, **args)

    with pytest.raises(staff.ActivationCodeInvalid):
        attempt(code="AAAA-BBBB-CCCC-DDDD-EEEE")
    with pytest.raises(staff.PasswordRejected):
        attempt(password="short-pass")
    with pytest.raises(staff.IdentityMismatch):
        attempt(identity_document=OTHER_ID)
    assert session.scalars(select(ActivationCode.failed_attempts)).one() == 1
    # Lower case, no brackets, spaces: the same number.
    result = attempt(code=code.lower().replace("-", " "), identity_document=" a1234563 ")
    assert result.password_set and result.person.email == "taiman@example.org"
    assert result.person.identity_document_last4 == "4563"
    with pytest.raises(staff.ActivationCodeUsed):
        attempt()
    link = session.scalars(select(UserAdminLogin)).one()
    assert link.person_id == result.person.id
    principal = staff.person_principal(session, staff.person_subject(result.person.id))
    assert principal.administers == (application.reference,)
    assert principal.providers == ()


def test_five_wrong_identity_numbers_void_the_code(session: Session) -> None:
    application = make_provider(
        session,
        [("CHAN Tai Man", ADMIN_ID, "taiman@example.org")],
        status=ApplicationStatus.APPROVED,
    )
    invite(session, application)
    code = sent_codes(session, "taiman@example.org")[0]
    for _ in range(staff.MAX_ACTIVATION_ATTEMPTS):
        with pytest.raises(staff.IdentityMismatch):
            staff.activate(
                session, CTX, code=code, identity_document=OTHER_ID, password=PASSWORD, now=START
            )
    with pytest.raises(staff.ActivationCodeVoid):
        staff.activate(
            session, CTX, code=code, identity_document=ADMIN_ID, password=PASSWORD, now=START
        )
    # The applicant has a new invitation sent: the new code works.
    staff.reinvite_user_admin(
        session, application, 1, actor=application.reference, now=START, base_url=CTX.base_url
    )
    new_code = sent_codes(session, "taiman@example.org")[-1]
    assert new_code != code
    staff.activate(
        session, CTX, code=new_code, identity_document=ADMIN_ID, password=PASSWORD, now=START
    )
    with pytest.raises(staff.UserAdminActive):
        staff.reinvite_user_admin(
            session, application, 1, actor=application.reference, now=START, base_url=CTX.base_url
        )
    with pytest.raises(staff.UserAdminNotFound):
        staff.reinvite_user_admin(
            session, application, 2, actor=application.reference, now=START, base_url=CTX.base_url
        )


def test_expired_and_replaced_codes(session: Session) -> None:
    application = make_provider(
        session,
        [("CHAN Tai Man", ADMIN_ID, "taiman@example.org")],
        status=ApplicationStatus.APPROVED,
    )
    invite(session, application)
    first = sent_codes(session, "taiman@example.org")[0]
    staff.reinvite_user_admin(
        session, application, 1, actor=application.reference, now=START, base_url=CTX.base_url
    )
    second = sent_codes(session, "taiman@example.org")[1]
    with pytest.raises(staff.ActivationCodeExpired):  # replaced by the second
        staff.activate(
            session, CTX, code=first, identity_document=ADMIN_ID, password=PASSWORD, now=START
        )
    with pytest.raises(staff.ActivationCodeExpired):  # 60 days later
        staff.activate(
            session,
            CTX,
            code=second,
            identity_document=ADMIN_ID,
            password=PASSWORD,
            now=START + dt.timedelta(days=60),
        )
    draft = make_provider(
        session, [("HO Wing", OTHER_ID, "ho@example.org")], status=ApplicationStatus.SUBMITTED
    )
    with pytest.raises(staff.ProviderNotAccepted):
        staff.reinvite_user_admin(
            session, draft, 1, actor=draft.reference, now=START, base_url=CTX.base_url
        )


def test_user_admin_of_two_providers_keeps_one_login_and_password(session: Session) -> None:
    first = make_provider(session, [("CHAN Tai Man", ADMIN_ID, "taiman@example.org")])
    second = make_provider(session, [("CHAN Tai Man", ADMIN_ID, "chan@second.example")])
    activated_admin(session, first, "taiman@example.org")
    invite(session, second)
    code = sent_codes(session, "chan@second.example")[0]
    with pytest.raises(staff.ExistingPasswordMismatch):
        staff.activate(
            session,
            CTX,
            code=code,
            identity_document=ADMIN_ID,
            password="another-password-2026",
            now=START,
        )
    result = staff.activate(
        session, CTX, code=code, identity_document=ADMIN_ID, password=PASSWORD, now=START
    )
    assert not result.password_set
    assert result.person.email == "taiman@example.org"  # the login stays
    assert session.scalar(select(func.count()).select_from(Person)) == 1
    principal = staff.person_principal(session, staff.person_subject(result.person.id))
    assert principal.administers == tuple(sorted([first.reference, second.reference]))


def test_invited_email_taken_by_another_identity(session: Session) -> None:
    application = make_provider(
        session,
        [
            ("CHAN Tai Man", ADMIN_ID, "shared@example.org"),
            ("HO Wing", OTHER_ID, "SHARED@example.org"),
        ],
    )
    invite(session, application)
    first, second = sent_codes(session, "shared@example.org") + sent_codes(
        session, "SHARED@example.org"
    )
    staff.activate(
        session, CTX, code=first, identity_document=ADMIN_ID, password=PASSWORD, now=START
    )
    with pytest.raises(staff.EmailInUse):
        staff.activate(
            session, CTX, code=second, identity_document=OTHER_ID, password=PASSWORD, now=START
        )


# --------------------------------------------------------------------------- logins


def test_people_log_in_with_their_email_and_tokens_follow_changes(session: Session) -> None:
    application = make_provider(session, [("CHAN Tai Man", ADMIN_ID, "taiman@example.org")])
    admin = activated_admin(session, application, "taiman@example.org")
    lifetime = dt.timedelta(hours=8)
    with pytest.raises(InvalidCredentials):
        login(session, "taiman@example.org", "wrong-password-2026", now=START, lifetime=lifetime)
    with pytest.raises(InvalidCredentials):
        login(session, "nobody@example.org", PASSWORD, now=START, lifetime=lifetime)
    token, principal = login(session, " TaiMan@Example.org", PASSWORD, now=START, lifetime=lifetime)
    assert (principal.kind, principal.role) == ("person", "person")
    assert principal.subject == admin.subject
    account = staff.open_staff_account(
        session,
        CTX,
        admin,
        application.reference,
        doctor("M54321", ADMIN_ID, "x@example.org"),
        now=START,
    )
    assert authenticate(session, token, now=START).providers == (application.reference,)
    staff.disable_staff_account(session, admin, application.reference, account.id, now=START)
    assert authenticate(session, token, now=START).providers == ()
    assert authenticate(session, token, now=START).administers == (application.reference,)
    # A staff member opened but not activated cannot log in, and has no usable token.
    staff.open_staff_account(session, CTX, admin, application.reference, doctor(), now=START)
    with pytest.raises(InvalidCredentials):
        login(session, "doc@example.org", "", now=START, lifetime=lifetime)
    with pytest.raises(NotAuthenticated):
        staff.person_principal(session, "person:999999")


# --------------------------------------------------------------------------- staff accounts


def test_staff_account_rules(session: Session) -> None:
    application = make_provider(session, [("CHAN Tai Man", ADMIN_ID, "taiman@example.org")])
    admin = activated_admin(session, application, "taiman@example.org")
    ref = application.reference

    def open_(data: staff.StaffAccountIn, principal: Principal = admin) -> StaffAccount:
        return staff.open_staff_account(session, CTX, principal, ref, data, now=START)

    account = open_(doctor())
    assert account.status is StaffAccountStatus.ACTIVE
    assert account.registration.registration_number == "M12345"
    with pytest.raises(staff.StaffAccountExists) as exists:
        open_(doctor())
    assert exists.value.detail == {"staff_account_id": account.id, "account_status": "active"}
    with pytest.raises(staff.RegistrationNumberConflict) as in_use:
        open_(doctor("M12345", OTHER_ID, "other@example.org"))
    assert in_use.value.code == "registration_number_in_use"
    with pytest.raises(staff.EmailInUse):
        open_(doctor("M22222", OTHER_ID, "DOC@example.org"))
    with pytest.raises(staff.ProfessionUnknown) as unknown:
        open_(doctor().model_copy(update={"profession": "surgeon"}))
    assert len(unknown.value.detail["professions"]) == 13
    with pytest.raises(staff.RegistrationNumberInvalid) as invalid:
        open_(doctor("D12345", OTHER_ID, "other@example.org"))
    assert invalid.value.detail == {"profession": "doctor", "examples": ["M12345"]}
    with pytest.raises(Forbidden) as not_person:
        open_(doctor(), Principal("applicant", ref, "applicant"))
    assert not_person.value.code == "person_only"
    # The same doctor at a second provider: another number in the same profession is
    # refused, the same number attaches to the same identity.
    second = make_provider(session, [("CHAN Tai Man", ADMIN_ID, "taiman@example.org")])
    invite(session, second)
    staff.activate(
        session,
        CTX,
        code=sent_codes(session, "taiman@example.org")[-1],
        identity_document=ADMIN_ID,
        password=PASSWORD,
        now=START,
    )
    admin = staff.person_principal(session, admin.subject)
    with pytest.raises(staff.RegistrationNumberConflict) as mismatch:
        staff.open_staff_account(session, CTX, admin, second.reference, doctor("M99999"), now=START)
    assert mismatch.value.code == "registration_number_mismatch"
    again = staff.open_staff_account(session, CTX, admin, second.reference, doctor(), now=START)
    assert again.person_id == account.person_id
    assert again.registration_id == account.registration_id
    assert session.scalar(select(func.count()).select_from(ProfessionalRegistration)) == 1
    # Opening at a provider the person has no password for yet mails one code per
    # provider; activating with one spends the other.
    codes = sent_codes(session, "doc@example.org")
    assert len(codes) == 2
    staff.activate(
        session, CTX, code=codes[0], identity_document=DOCTOR_ID, password=STAFF_PASSWORD, now=START
    )
    with pytest.raises(staff.ActivationCodeUsed):
        staff.activate(
            session,
            CTX,
            code=codes[1],
            identity_document=DOCTOR_ID,
            password=STAFF_PASSWORD,
            now=START,
        )


def test_provider_checks(session: Session) -> None:
    mine = make_provider(
        session,
        [("CHAN Tai Man", ADMIN_ID, "taiman@example.org")],
        status=ApplicationStatus.APPROVED,
    )
    theirs = make_provider(session, [("HO Wing", OTHER_ID, "ho@example.org")])
    admin = activated_admin(session, mine, "taiman@example.org")
    with pytest.raises(staff.ProviderNotEffective) as not_effective:
        staff.open_staff_account(session, CTX, admin, mine.reference, doctor(), now=START)
    assert not_effective.value.detail == {
        "provider_status": "approved",
        "effective_at_earliest": (START + dt.timedelta(days=14)).isoformat(),
    }
    for reference in (theirs.reference, "HCP-00000000", "nonsense\x00"):
        with pytest.raises(staff.ProviderNotFound):
            staff.open_staff_account(session, CTX, admin, reference, doctor(), now=START)
    mine.status = ApplicationStatus.EFFECTIVE
    session.commit()
    account = staff.open_staff_account(session, CTX, admin, mine.reference, doctor(), now=START)
    mine.status = ApplicationStatus.WITHDRAWN
    session.commit()
    with pytest.raises(staff.ProviderNotEffective):
        staff.disable_staff_account(session, admin, mine.reference, account.id, now=START)


def test_audit_records_changes_without_secrets(session: Session) -> None:
    application = make_provider(session, [("CHAN Tai Man", ADMIN_ID, "taiman@example.org")])
    invite(session, application)
    code = sent_codes(session, "taiman@example.org")[0]
    with pytest.raises(staff.IdentityMismatch):
        staff.activate(
            session, CTX, code=code, identity_document=OTHER_ID, password=PASSWORD, now=START
        )
    result = staff.activate(
        session, CTX, code=code, identity_document=ADMIN_ID, password=PASSWORD, now=START
    )
    admin = staff.person_principal(session, staff.person_subject(result.person.id))
    login(session, "taiman@example.org", PASSWORD, now=START, lifetime=dt.timedelta(hours=1))
    account = staff.open_staff_account(
        session, CTX, admin, application.reference, doctor(), now=START
    )
    staff.disable_staff_account(session, admin, application.reference, account.id, now=START)
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [e.event_type for e in events] == [
        "user_admin.invited",
        "person.activation_failed",
        "person.activated",
        "auth.login",
        "staff.account_opened",
        "staff.account_disabled",
    ]
    staff_code = sent_codes(session, "doc@example.org")[0]
    everything = " ".join(f"{e.actor} {e.subject} {e.details}" for e in events)
    for secret in (
        code,
        code.replace("-", ""),
        staff_code,
        PASSWORD,
        "A123456",
        "A1234563",
        DOCTOR_ID[:7],
        OTHER_ID[:7],
    ):
        assert secret not in everything
    assert '"registration_number":"M12345"' in events[4].details
    assert verify_chain(session).ok
