"""Application use cases: create, fill the five steps, submit, review, collect.

Handlers in ``api/`` call exactly one of these per request. Functions that change
state commit before they return (a decision and its mails in one transaction).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import puremagic
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.models import CertificateRecord
from issuance.codes import create_download_code
from issuance.mail import enqueue_mail
from issuance.service import ApprovedLocation
from registration import rules
from registration.accounts import REFERENCE_PATTERN, Principal
from registration.errors import (
    ApplicationIncomplete,
    ApplicationLapsed,
    ApplicationLocked,
    ApplicationNotFound,
    ApplicationWithdrawn,
    DocumentRejected,
    NotCollectable,
    ServiceLocationNotFound,
    ServiceLocationRemoved,
)
from registration.lifecycle import COLLECTABLE, EDITABLE, UPLOADABLE, Action, transition
from registration.models import (
    Application,
    ApplicationEvent,
    ApplicationStatus,
    Document,
    ServiceLocation,
    UserAdmin,
)
from registration.notices import notify
from registration.passwords import hash_password
from registration.schemas import (
    ApplicationCreate,
    ApplicationOut,
    DocumentOut,
    EventOut,
    ProviderDetails,
    ProviderOut,
    ServiceLocationIn,
    ServiceLocationOut,
    UserAdminIn,
    UserAdminOut,
)
from registration.staff import invite_user_admins

#: A registration takes effect this long after the acceptance email (DESIGN.md).
EFFECTIVE_AFTER = rules.EFFECTIVE_AFTER
REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Content types accepted for supporting documents, as recognised from the bytes.
DOCUMENT_TYPES = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}
MAX_LOCATIONS = 200
MAX_USER_ADMINS = 20


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """Upload limits (settings): bytes per file and files per application."""

    max_bytes: int
    max_documents: int


@dataclass(frozen=True, slots=True)
class ApprovalContext:
    """What an approval needs besides the database: code lifetime and URLs for mail."""

    download_code_validity: dt.timedelta
    base_url: str


def _new_reference() -> str:
    return "HCP-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))


def create_application(
    session: Session, data: ApplicationCreate, *, now: dt.datetime
) -> Application:
    """Open a draft application; returns it with its new ``reference`` (commits)."""
    application = Application(
        reference=_new_reference(),
        password_hash=hash_password(data.password),
        contact_email=str(data.contact_email),
        language=data.language,
        status=ApplicationStatus.DRAFT,
        created_at=now,
    )
    session.add(application)
    session.commit()
    return application


def check_reference(reference: str, subject: str, *, is_officer: bool) -> None:
    """Refuse a reference the caller may not look up, before any query.

    Args:
        subject: the login's subject (an applicant's is its application reference).
        is_officer: officers may look up any application.

    Raises:
        ApplicationNotFound: another applicant's reference, or one not shaped like a
            reference (never looked up: PostgreSQL refuses text with NUL in a query).
    """
    if not is_officer and subject != reference:
        raise ApplicationNotFound(f"no application {reference} for this login")
    if not REFERENCE_PATTERN.fullmatch(reference):
        raise ApplicationNotFound(f"no application {reference!r}")


def get_application(session: Session, reference: str, principal: Principal) -> Application:
    """The application ``reference`` if ``principal`` may see it (its applicant, or any
    officer).

    Raises:
        ApplicationNotFound: unknown, another applicant's, or not shaped like a
            reference (never looked up: PostgreSQL refuses text with NUL in a query).
    """
    check_reference(reference, principal.subject, is_officer=principal.is_officer)
    application = session.scalars(
        select(Application).where(Application.reference == reference)
    ).first()
    if application is None:
        raise ApplicationNotFound(f"no application {reference}")
    return application


def _require_editable(application: Application) -> None:
    if application.status not in EDITABLE:
        raise ApplicationLocked(
            f"the application is {application.status.value}; its steps can no longer change"
        )


def set_provider(session: Session, application: Application, data: ProviderDetails) -> None:
    """Step 1 (commits). Also sets the application's mail language.

    Raises:
        ApplicationLocked: after submit.
    """
    _require_editable(application)
    application.provider_type = data.provider_type
    application.name_en = data.name_en
    application.name_zh = data.name_zh
    application.business_registration_number = data.business_registration_number
    application.correspondence_address = data.correspondence_address
    application.phone = data.phone
    application.email = str(data.email)
    application.language = data.preferred_language
    session.commit()


def _hash_identity(normalised: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(normalised.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def set_user_admins(session: Session, application: Application, admins: list[UserAdminIn]) -> None:
    """Step 2 (commits): replaces the list. Identity numbers are kept as salted scrypt
    hashes plus the last four characters.

    Raises:
        ApplicationLocked: after submit. ValueError: empty or more than 20.
    """
    _require_editable(application)
    if not 1 <= len(admins) <= MAX_USER_ADMINS:
        raise ValueError(f"give 1 to {MAX_USER_ADMINS} user administrators")
    application.user_admins = [
        UserAdmin(
            name=a.name,
            identity_document_hash=_hash_identity(a.identity_document),
            identity_document_last4=a.identity_document[-4:],
            email=str(a.email),
            phone=a.phone,
            position=a.position,
        )
        for a in admins
    ]
    session.commit()


def set_service_locations(
    session: Session, application: Application, locations: list[ServiceLocationIn]
) -> None:
    """Step 3 (commits): replaces the list; locations are numbered 1, 2, ... in order.

    Raises:
        ApplicationLocked: after submit. ValueError: empty or more than 200.
    """
    _require_editable(application)
    if not 1 <= len(locations) <= MAX_LOCATIONS:
        raise ValueError(f"give 1 to {MAX_LOCATIONS} service locations")
    application.service_locations = []
    session.flush()
    application.service_locations = [
        ServiceLocation(
            number=i,
            name_en=loc.name_en,
            name_zh=loc.name_zh,
            address=loc.address,
            district=loc.district,
            phone=loc.phone,
            opening_status=loc.opening_status,
        )
        for i, loc in enumerate(locations, start=1)
    ]
    session.commit()


_UNSAFE_FILENAME = re.compile(r"[^\w.\- ()]+", re.UNICODE)


def sanitise_filename(name: str) -> str:
    """Keep only the last path component, NFC-normalised, without control or
    path characters, at most 120 characters; ``document`` if nothing is left."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable())
    base = _UNSAFE_FILENAME.sub("_", base).strip(" .")
    return base[:120] or "document"


def sniff_document_type(content: bytes) -> str:
    """The MIME type of ``content`` recognised from its bytes (puremagic), if it is a
    PDF, JPEG or PNG.

    Raises:
        DocumentRejected: anything else (the file name and declared type are ignored).
    """
    try:
        mime = puremagic.from_string(content, mime=True)
    except (puremagic.PureError, ValueError):
        mime = ""
    if mime not in DOCUMENT_TYPES:
        raise DocumentRejected(
            "documents must be PDF, JPEG or PNG (recognised from the content)",
            code="document_type_not_allowed",
        )
    return mime


def add_document(
    session: Session,
    application: Application,
    *,
    kind: str,
    filename: str,
    content: bytes,
    store: Path,
    limits: DocumentLimits,
    now: dt.datetime,
) -> tuple[Document, bool]:
    """Step 4 (commits): store ``content`` at ``store/ab/abcdef...`` (SHA-256) and record it.

    Returns:
        ``(document, created)``; ``created`` is False when the application already had
        the same bytes (the existing record is returned).

    Raises:
        ApplicationLocked: not in draft or documents_requested.
        DocumentRejected: unknown kind, empty, too large, wrong type, too many documents.
    """
    if application.status not in UPLOADABLE:
        raise ApplicationLocked(f"documents cannot be added while {application.status.value}")
    if kind not in rules.DOCUMENT_KINDS:
        raise DocumentRejected(
            f"unknown document kind {kind!r}; one of: {', '.join(rules.DOCUMENT_KINDS)}",
            code="document_kind_unknown",
        )
    if not content:
        raise DocumentRejected("the file is empty", code="document_empty")
    if len(content) > limits.max_bytes:
        raise DocumentRejected(
            f"documents may have at most {limits.max_bytes} bytes", code="document_too_large"
        )
    content_type = sniff_document_type(content)
    sha256 = hashlib.sha256(content).hexdigest()
    existing = next((d for d in application.documents if d.sha256 == sha256), None)
    if existing is not None:
        return existing, False
    if len(application.documents) >= limits.max_documents:
        raise DocumentRejected(
            f"an application may have at most {limits.max_documents} documents",
            code="too_many_documents",
        )
    path = store / sha256[:2] / sha256
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{sha256}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    document = Document(
        kind=kind,
        filename=sanitise_filename(filename),
        content_type=content_type,
        size_bytes=len(content),
        sha256=sha256,
        uploaded_at=now,
    )
    application.documents.append(document)
    session.commit()
    return document, True


def missing_items(application: Application) -> list[str]:
    """What still blocks submission, as stable item codes (``provider``,
    ``user_admins``, ``service_locations``, ``document:<kind>``)."""
    missing: list[str] = []
    if application.provider_type is None:
        missing.append("provider")
    if not application.user_admins:
        missing.append("user_admins")
    if not application.service_locations:
        missing.append("service_locations")
    if application.provider_type is not None:
        have = {d.kind for d in application.documents}
        missing += [
            f"document:{kind}"
            for kind in rules.REQUIRED_DOCUMENTS[application.provider_type]
            if kind not in have
        ]
    elif not application.documents:
        missing.append("documents")
    return missing


def _record(
    session: Session,
    application: Application,
    action: Action,
    actor: str,
    reason: str | None,
    now: dt.datetime,
) -> None:
    event = transition(application.status, action, actor=actor, reason=reason)
    application.status = event.to_status
    session.add(
        ApplicationEvent(
            application_id=application.id,
            from_status=event.from_status.value,
            to_status=event.to_status.value,
            actor=actor,
            reason=reason,
            at=now,
        )
    )


def submit(
    session: Session, application: Application, principal: Principal, *, now: dt.datetime
) -> None:
    """Step 5 (commits).

    Raises:
        ApplicationIncomplete: with ``detail['missing']``.
        registration.lifecycle.TransitionRefused: not in draft or documents_requested.
    """
    missing = missing_items(application)
    if missing:
        raise ApplicationIncomplete(
            "the application is incomplete: " + ", ".join(missing), missing=missing
        )
    _record(session, application, Action.SUBMIT, principal.subject, None, now)
    application.submitted_at = now
    record_event(
        session,
        "application.submitted",
        actor=principal.subject,
        now=now,
        subject=application.reference,
    )
    session.commit()


def decide(
    session: Session,
    application: Application,
    *,
    decision: str,
    reason: str,
    officer: Principal,
    ctx: ApprovalContext,
    now: dt.datetime,
) -> dict[int, str]:
    """Record a reviewer's decision (commits, with its mails in the outbox).

    On approval: one download code per service location (stored hashed), the
    acceptance email, the login-instructions email (with the codes) and an
    invitation to each user administrator (:func:`registration.staff.invite_user_admins`).
    On rejection or a documents request: the ``rejected`` or ``documents_requested``
    email with the reason (and the 60-day deadline for documents).

    Returns:
        ``{service location number: download code}`` on approval (for the mail only;
        the API never returns it), else ``{}``.

    Raises:
        registration.errors.Forbidden: not a reviewer.
        registration.lifecycle.TransitionRefused: not submitted, or no reason.
        ApplicationIncomplete: approval while required documents are missing.
    """
    officer.require_role("reviewer")
    action = Action(decision)
    if action is Action.APPROVE and missing_items(application):
        raise ApplicationIncomplete(
            "cannot approve: " + ", ".join(missing_items(application)),
            missing=missing_items(application),
        )
    _record(session, application, action, officer.subject, reason, now)
    application.decided_at = now
    application.decision_reason = reason
    record_event(
        session,
        f"application.{action.value}",
        actor=officer.subject,
        now=now,
        subject=application.reference,
        details={"reason": reason},
    )
    codes: dict[int, str] = {}
    if action is Action.APPROVE:
        application.accepted_at = now
        for location in application.service_locations:
            codes[location.number] = create_download_code(
                session, location.id, now=now, validity=ctx.download_code_validity
            )
        _approval_mails(session, application, codes, ctx, now)
        invite_user_admins(session, application, now=now, base_url=ctx.base_url)
    elif action is Action.REJECT:
        notify(session, application, "rejected", now=now, reason=reason)
    else:
        notify(
            session,
            application,
            "documents_requested",
            now=now,
            reason=reason,
            deadline_on=(now + rules.DOCUMENTS_DEADLINE).date().isoformat(),
            base_url=ctx.base_url,
        )
    session.commit()
    return codes


def _display_name(application: Application) -> str:
    if application.language != "en" and application.name_zh:
        return application.name_zh
    return application.name_en or application.reference


def _approval_mails(
    session: Session,
    application: Application,
    codes: dict[int, str],
    ctx: ApprovalContext,
    now: dt.datetime,
) -> None:
    common = {
        "reference": application.reference,
        "provider_name": _display_name(application),
        "accepted_on": now.date().isoformat(),
        "effective_on": (now + EFFECTIVE_AFTER).date().isoformat(),
        "expires_on": (now + ctx.download_code_validity).date().isoformat(),
        "base_url": ctx.base_url,
    }
    zh = application.language != "en"
    locations = [
        {
            "number": loc.number,
            "name": (loc.name_zh if zh and loc.name_zh else loc.name_en),
            "code": codes[loc.number],
        }
        for loc in application.service_locations
    ]
    for template, extra in (("acceptance", {}), ("login_instructions", {"locations": locations})):
        enqueue_mail(
            session,
            recipient=application.contact_email,
            template=template,
            language=application.language,
            context={**common, **extra},
            now=now,
        )


def check_collectable(status: ApplicationStatus) -> None:
    """Refuse collection unless the application is approved or effective
    (``registration.lifecycle.COLLECTABLE``).

    Raises:
        ApplicationLapsed: 410 ``application_lapsed``: its download codes stopped working.
        ApplicationWithdrawn: the registration was withdrawn.
        NotCollectable: any other status (e.g. still under review).
    """
    if status is ApplicationStatus.LAPSED:
        raise ApplicationLapsed(
            "the application lapsed; its download codes no longer work (apply again)"
        )
    if status is ApplicationStatus.WITHDRAWN:
        raise ApplicationWithdrawn("the registration was withdrawn")
    if status not in COLLECTABLE:
        raise NotCollectable(
            f"certificates can be collected once the application is approved; it is {status.value}"
        )


def check_location(
    reference: str, number: int, *, found: bool, removed_at: dt.datetime | None
) -> None:
    """Refuse a service location that does not exist or was removed.

    Raises:
        ServiceLocationNotFound: ``found`` is false.
        ServiceLocationRemoved: ``removed_at`` is set.
    """
    if not found:
        raise ServiceLocationNotFound(f"application {reference} has no service location {number}")
    if removed_at is not None:
        raise ServiceLocationRemoved(f"service location {number} was removed")


def approved_location(application: Application, number: int) -> ApprovedLocation:
    """Hand service location ``number`` of an approved application to issuance.

    Raises:
        NotCollectable: the application is not approved (or effective);
            ``ApplicationLapsed`` (410 ``application_lapsed``) once it lapsed, so its
            download codes stop working; ``ApplicationWithdrawn`` once withdrawn.
        ServiceLocationNotFound: no such location.
        ServiceLocationRemoved: the location was removed from the registration.
    """
    check_collectable(application.status)
    location = next((s for s in application.service_locations if s.number == number), None)
    check_location(
        application.reference,
        number,
        found=location is not None,
        removed_at=None if location is None else location.removed_at,
    )
    assert location is not None  # check_location raised otherwise
    return ApprovedLocation(
        provider_reference=application.reference,
        service_location_id=location.id,
        number=location.number,
        provider_name_en=application.name_en or application.reference,
        provider_name_zh=application.name_zh,
        location_name_en=location.name_en,
        location_name_zh=location.name_zh,
    )


def application_view(session: Session, application: Application) -> ApplicationOut:
    """The review of every step, what is missing, status, reason and history."""
    serials: dict[int, list[str]] = {}
    location_ids = [loc.id for loc in application.service_locations]
    if location_ids:
        for loc_id, serial in session.execute(
            select(CertificateRecord.service_location_id, CertificateRecord.serial_number)
            .where(CertificateRecord.service_location_id.in_(location_ids))
            .order_by(CertificateRecord.id)
        ):
            serials.setdefault(loc_id or 0, []).append(serial)
    provider = None
    if application.provider_type is not None:
        provider = ProviderOut(
            provider_type=application.provider_type,
            name_en=application.name_en,
            name_zh=application.name_zh,
            business_registration_number=application.business_registration_number,
            correspondence_address=application.correspondence_address,
            phone=application.phone,
            email=application.email,
            preferred_language=application.language,
        )
    return ApplicationOut(
        reference=application.reference,
        status=application.status.value,
        language=application.language,
        contact_email=application.contact_email,
        provider=provider,
        user_admins=[
            UserAdminOut(
                name=a.name,
                identity_document_last4=a.identity_document_last4,
                email=a.email,
                phone=a.phone,
                position=a.position,
            )
            for a in application.user_admins
        ],
        service_locations=[
            ServiceLocationOut(
                id=loc.number,
                name_en=loc.name_en,
                name_zh=loc.name_zh,
                address=loc.address,
                district=loc.district,
                phone=loc.phone,
                opening_status=loc.opening_status,
                certificate_serial_numbers=serials.get(loc.id, []),
                removed_at=loc.removed_at,
            )
            for loc in application.service_locations
        ],
        documents=[
            DocumentOut(
                id=d.id,
                kind=d.kind,
                filename=d.filename,
                content_type=d.content_type,
                size_bytes=d.size_bytes,
                sha256=d.sha256,
                uploaded_at=d.uploaded_at,
            )
            for d in application.documents
        ],
        missing=missing_items(application),
        decision_reason=application.decision_reason,
        created_at=application.created_at,
        submitted_at=application.submitted_at,
        accepted_at=application.accepted_at,
        effective_at=application.effective_at
        or (
            application.accepted_at + EFFECTIVE_AFTER  # the earliest it can take effect
            if application.accepted_at and application.status is ApplicationStatus.APPROVED
            else None
        ),
        events=[
            EventOut(
                from_status=e.from_status,
                to_status=e.to_status,
                actor=e.actor,
                reason=e.reason,
                at=e.at,
            )
            for e in application.events
        ],
    )


def list_applications(
    session: Session,
    *,
    status: str | None,
    limit: int,
    offset: int,
    provider_type: str | None = None,
    submitted_before: dt.datetime | None = None,
) -> tuple[int, list[Application]]:
    """Reviewer queue: ``(total, page)`` oldest submission first, optionally only one
    ``status``, one ``provider_type``, or those submitted at or before
    ``submitted_before`` (the age filter; never-submitted drafts are then left out)."""
    query = select(Application)
    count = select(func.count()).select_from(Application)
    criteria = []
    if status is not None:
        criteria.append(Application.status == ApplicationStatus(status))
    if provider_type is not None:
        criteria.append(Application.provider_type == provider_type)
    if submitted_before is not None:
        criteria.append(Application.submitted_at <= submitted_before)
    query = query.where(*criteria)
    count = count.where(*criteria)
    total = session.scalar(count) or 0
    rows = session.scalars(
        query.order_by(Application.submitted_at.is_(None), Application.submitted_at, Application.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return total, list(rows)


def find_service_location(
    session: Session, service_location_id: int | None
) -> ServiceLocation | None:
    """The service location with database id ``service_location_id`` (``None`` → ``None``)."""
    if service_location_id is None:
        return None
    return session.get(ServiceLocation, service_location_id)
