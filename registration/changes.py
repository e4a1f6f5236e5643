"""Changes to a registration after approval: add a service location (a change request a
reviewer approves or rejects, like an application), remove one, withdraw everything.

Registration never imports revocation (DESIGN.md: dependencies point down). Removing
a location or withdrawing stages the change here (``commit=False``); ``api/changes.py``
stages the revocation of the certificates concerned (``cessationOfOperation``) in the
same transaction and commits both: all or nothing. A periodic job revokes whatever
:func:`certificates_due_for_revocation` still finds (a certificate whose collection was
in flight while the removal committed), so a removed location never keeps a valid
certificate for long.

Change requests are kept as history: ``add_service_location`` goes ``pending →
approved | rejected``; ``remove_service_location`` and ``withdraw`` are ``done`` at
once. Each records who asked and why, and who decided and why.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.models import CertificateRecord, CertificateStatus
from issuance.codes import create_download_code
from registration.accounts import Principal
from registration.errors import (
    ChangeRefused,
    ChangeRequestNotFound,
    ServiceLocationNotFound,
    ServiceLocationRemoved,
)
from registration.lifecycle import REGISTERED, SYSTEM_ACTOR, Action
from registration.models import Application, ApplicationStatus, ChangeRequest, ServiceLocation
from registration.notices import location_name, notify, record_transition
from registration.schemas import ChangeRequestOut, ServiceLocationIn
from registration.service import MAX_LOCATIONS, ApprovalContext

#: Pending change requests one registration may have at once.
MAX_PENDING = 10


class ChangeKind(enum.StrEnum):
    """What a change request asks for."""

    ADD_SERVICE_LOCATION = "add_service_location"
    REMOVE_SERVICE_LOCATION = "remove_service_location"
    WITHDRAW = "withdraw"


class ChangeStatus(enum.StrEnum):
    """Where a change request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    DONE = "done"


#: (status, decision) → next status; only pending requests are decided.
CHANGE_TRANSITIONS: dict[tuple[ChangeStatus, str], ChangeStatus] = {
    (ChangeStatus.PENDING, "approve"): ChangeStatus.APPROVED,
    (ChangeStatus.PENDING, "reject"): ChangeStatus.REJECTED,
}


def _lock(session: Session, application: Application) -> None:
    """Re-read ``application`` and its service locations under a row lock (PostgreSQL
    ``FOR UPDATE``; SQLite serialises writers), so two concurrent changes of one
    registration see each other."""
    session.scalars(
        select(Application)
        .where(Application.id == application.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    session.scalars(
        select(ServiceLocation)
        .where(ServiceLocation.application_id == application.id)
        .execution_options(populate_existing=True)
    ).all()


def _require_registered(application: Application) -> None:
    if application.status not in REGISTERED:
        raise ChangeRefused(
            f"the registration is {application.status.value}; changes need an approved "
            "or effective registration",
            code="registration_not_active",
        )


def _active_locations(application: Application) -> list[ServiceLocation]:
    return [loc for loc in application.service_locations if loc.removed_at is None]


def _pending(session: Session, application: Application) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(ChangeRequest)
            .where(
                ChangeRequest.application_id == application.id,
                ChangeRequest.status == ChangeStatus.PENDING.value,
            )
        )
        or 0
    )


def request_service_location(
    session: Session,
    application: Application,
    data: ServiceLocationIn,
    *,
    actor: str,
    reason: str | None,
    now: dt.datetime,
) -> ChangeRequest:
    """Ask to add the service location ``data`` (commits a pending change request).

    Raises:
        ChangeRefused: ``registration_not_active`` (not approved or effective),
            ``too_many_pending_changes`` (:data:`MAX_PENDING`) or
            ``too_many_service_locations`` (``registration.service.MAX_LOCATIONS``).
    """
    _lock(session, application)
    _require_registered(application)
    pending = _pending(session, application)
    if pending >= MAX_PENDING:
        raise ChangeRefused(
            f"at most {MAX_PENDING} change requests may wait for review at once",
            code="too_many_pending_changes",
        )
    if len(_active_locations(application)) + pending >= MAX_LOCATIONS:
        raise ChangeRefused(
            f"a registration has at most {MAX_LOCATIONS} service locations",
            code="too_many_service_locations",
        )
    change = ChangeRequest(
        application_id=application.id,
        kind=ChangeKind.ADD_SERVICE_LOCATION.value,
        status=ChangeStatus.PENDING.value,
        proposal=data.model_dump(mode="json"),
        requested_by=actor,
        reason=reason,
        requested_at=now,
    )
    session.add(change)
    session.flush()
    record_event(
        session,
        "change.requested",
        actor=actor,
        now=now,
        subject=application.reference,
        details={"change_request": change.id, "kind": change.kind, "reason": reason},
    )
    session.commit()
    return change


def get_change_request(
    session: Session, change_id: int, principal: Principal
) -> tuple[ChangeRequest, Application]:
    """The change request ``change_id`` and its application, if ``principal`` may see it
    (any officer, or the applicant whose registration it concerns).

    Raises:
        ChangeRequestNotFound: unknown, or another applicant's (reported alike).
    """
    change = session.get(ChangeRequest, change_id) if 0 < change_id < 2**31 else None
    if change is None or (
        not principal.is_officer and change.application.reference != principal.subject
    ):
        raise ChangeRequestNotFound(f"no change request {change_id}")
    return change, change.application


def list_change_requests(
    session: Session,
    *,
    application: Application | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int,
    offset: int,
) -> tuple[int, list[ChangeRequest]]:
    """``(total, page)`` of change requests, oldest first, optionally of one
    ``application``, one ``status`` and one ``kind``."""
    criteria = []
    if application is not None:
        criteria.append(ChangeRequest.application_id == application.id)
    if status is not None:
        criteria.append(ChangeRequest.status == status)
    if kind is not None:
        criteria.append(ChangeRequest.kind == kind)
    total = session.scalar(select(func.count()).select_from(ChangeRequest).where(*criteria)) or 0
    rows = session.scalars(
        select(ChangeRequest)
        .where(*criteria)
        .order_by(ChangeRequest.requested_at, ChangeRequest.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return total, list(rows)


def change_view(change: ChangeRequest) -> ChangeRequestOut:
    """A change request as the API shows it (``service_location_id`` as the location's
    number, the ``id`` used in URLs)."""
    number = None
    if change.service_location_id is not None:
        location = next(
            (s for s in change.application.service_locations if s.id == change.service_location_id),
            None,
        )
        number = location.number if location is not None else None
    return ChangeRequestOut(
        id=change.id,
        reference=change.application.reference,
        kind=change.kind,
        status=change.status,
        service_location=(
            ServiceLocationIn.model_validate(change.proposal) if change.proposal else None
        ),
        service_location_id=number,
        requested_by=change.requested_by,
        reason=change.reason,
        requested_at=change.requested_at,
        decided_by=change.decided_by,
        decision_reason=change.decision_reason,
        decided_at=change.decided_at,
    )


def decide_change(
    session: Session,
    change: ChangeRequest,
    *,
    decision: str,
    reason: str,
    officer: Principal,
    ctx: ApprovalContext,
    now: dt.datetime,
) -> dict[int, str]:
    """Approve or reject a pending addition (commits, with its email).

    Approval creates the service location with the next unused number, a download code
    for it (stored hashed) and the ``location_added`` email carrying the code; the new
    location gets its own certificate. Rejection sends ``change_rejected``.

    Returns:
        ``{location number: download code}`` on approval (for the mail only), else ``{}``.

    Raises:
        registration.errors.Forbidden: not a reviewer.
        ChangeRefused: ``change_request_decided`` (not pending), or
            ``registration_not_active`` (approval of a registration that is no longer
            approved or effective).
        ValueError: ``decision`` is neither ``approve`` nor ``reject``.
    """
    officer.require_role("reviewer")
    application = change.application
    _lock(session, application)
    session.refresh(change)
    target = CHANGE_TRANSITIONS.get((ChangeStatus(change.status), decision))
    if target is None:
        if decision not in ("approve", "reject"):
            raise ValueError("decision must be approve or reject")
        raise ChangeRefused(
            f"change request {change.id} is {change.status} already",
            code="change_request_decided",
        )
    proposal = ServiceLocationIn.model_validate(change.proposal or {})
    codes: dict[int, str] = {}
    if target is ChangeStatus.APPROVED:
        _require_registered(application)
        number = max((loc.number for loc in application.service_locations), default=0) + 1
        location = ServiceLocation(
            number=number,
            name_en=proposal.name_en,
            name_zh=proposal.name_zh,
            address=proposal.address,
            district=proposal.district,
            phone=proposal.phone,
            opening_status=proposal.opening_status,
        )
        application.service_locations.append(location)
        session.flush()
        change.service_location_id = location.id
        codes[number] = create_download_code(
            session, location.id, now=now, validity=ctx.download_code_validity
        )
        notify(
            session,
            application,
            "location_added",
            now=now,
            location_number=number,
            location_name=location_name(application, location),
            reason=reason,
            code=codes[number],
            expires_on=(now + ctx.download_code_validity).date().isoformat(),
            base_url=ctx.base_url,
        )
    else:
        zh = application.language != "en" and proposal.name_zh
        notify(
            session,
            application,
            "change_rejected",
            now=now,
            location_name=proposal.name_zh if zh else proposal.name_en,
            reason=reason,
        )
    change.status = target.value
    change.decided_by = officer.subject
    change.decided_at = now
    change.decision_reason = reason
    record_event(
        session,
        f"change.{target.value}",
        actor=officer.subject,
        now=now,
        subject=application.reference,
        details={"change_request": change.id, "kind": change.kind, "reason": reason},
    )
    session.commit()
    return codes


def _done(
    application: Application,
    kind: ChangeKind,
    *,
    actor: str,
    reason: str,
    now: dt.datetime,
    location: ServiceLocation | None = None,
) -> ChangeRequest:
    return ChangeRequest(
        application_id=application.id,
        kind=kind.value,
        status=ChangeStatus.DONE.value,
        proposal=None,
        service_location_id=location.id if location is not None else None,
        requested_by=actor,
        reason=reason,
        requested_at=now,
        decided_by=actor,
        decision_reason=reason,
        decided_at=now,
    )


def remove_service_location(
    session: Session,
    application: Application,
    number: int,
    *,
    actor: str,
    reason: str,
    now: dt.datetime,
    commit: bool = True,
) -> ServiceLocation:
    """Remove service location ``number`` from the registration, with the
    ``location_removed`` email (commits unless ``commit`` is false: the caller then
    stages the revocations and commits both). Its download codes stop working at once.

    Raises:
        ChangeRefused: ``registration_not_active``, or ``last_service_location`` (withdraw
            the registration instead).
        ServiceLocationNotFound: no such location.
        ServiceLocationRemoved: removed already.
    """
    _lock(session, application)
    _require_registered(application)
    location = next((s for s in application.service_locations if s.number == number), None)
    if location is None:
        raise ServiceLocationNotFound(
            f"application {application.reference} has no service location {number}"
        )
    if location.removed_at is not None:
        raise ServiceLocationRemoved(f"service location {number} was removed already")
    if len(_active_locations(application)) <= 1:
        raise ChangeRefused(
            "this is the registration's last service location: withdraw the registration instead",
            code="last_service_location",
        )
    location.removed_at = now
    session.add(
        _done(
            application,
            ChangeKind.REMOVE_SERVICE_LOCATION,
            actor=actor,
            reason=reason,
            now=now,
            location=location,
        )
    )
    record_event(
        session,
        "change.service_location_removed",
        actor=actor,
        now=now,
        subject=application.reference,
        details={"service_location": number, "reason": reason},
    )
    notify(
        session,
        application,
        "location_removed",
        now=now,
        location_number=number,
        location_name=location_name(application, location),
        reason=reason,
    )
    if commit:
        session.commit()
    return location


def withdraw(
    session: Session,
    application: Application,
    *,
    actor: str,
    reason: str,
    now: dt.datetime,
    commit: bool = True,
) -> None:
    """Withdraw the whole registration, with the ``registration_withdrawn`` email:
    ``approved | effective → withdrawn``, pending change requests rejected (commits
    unless ``commit`` is false: the caller then stages the revocation of every
    certificate and commits both).

    Raises:
        registration.lifecycle.TransitionRefused: not approved or effective.
    """
    _lock(session, application)
    record_transition(session, application, Action.WITHDRAW, actor=actor, reason=reason, now=now)
    close_pending_changes(session, application, reason="the registration was withdrawn", now=now)
    session.add(_done(application, ChangeKind.WITHDRAW, actor=actor, reason=reason, now=now))
    notify(session, application, "registration_withdrawn", now=now, reason=reason)
    if commit:
        session.commit()


def close_pending_changes(
    session: Session, application: Application, *, reason: str, now: dt.datetime
) -> int:
    """Reject every pending change request of ``application`` as the system (the caller
    commits); returns how many. Used when the registration ends."""
    rows = session.scalars(
        select(ChangeRequest).where(
            ChangeRequest.application_id == application.id,
            ChangeRequest.status == ChangeStatus.PENDING.value,
        )
    ).all()
    for change in rows:
        change.status = ChangeStatus.REJECTED.value
        change.decided_by = SYSTEM_ACTOR
        change.decided_at = now
        change.decision_reason = reason
    return len(rows)


def certificates_due_for_revocation(
    session: Session, *, limit: int = 500
) -> list[CertificateRecord]:
    """Issued certificates that must be revoked with ``cessationOfOperation``: those of
    removed service locations and of withdrawn registrations (oldest first)."""
    removed = select(ServiceLocation.id).where(ServiceLocation.removed_at.is_not(None))
    withdrawn = select(Application.reference).where(
        Application.status == ApplicationStatus.WITHDRAWN
    )
    return list(
        session.scalars(
            select(CertificateRecord)
            .where(
                CertificateRecord.status == CertificateStatus.ISSUED,
                or_(
                    CertificateRecord.service_location_id.in_(removed),
                    CertificateRecord.provider_reference.in_(withdrawn),
                ),
            )
            .order_by(CertificateRecord.id)
            .limit(limit)
        )
    )
