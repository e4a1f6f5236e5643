"""The time rules of registration (DESIGN.md, Domain), driven by an injected clock.

:func:`apply_time_rules` is run by ``ehrca tasks run`` and by the periodic scheduler of
``ehrca serve`` (``api/tasks.py``). It is idempotent, and safe when several workers run
it at once: each application is re-read under a row lock (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite serialises writers) and its status checked again before it moves,
then committed on its own with its email.

The rules (durations in ``registration.rules``):

- ``approved → effective`` 14 days after the acceptance email, whether or not a
  certificate has been collected (issue #3, DESIGN.md); ``effective_at`` is that
  deadline, ``accepted_at + 14 days`` (not the moment the job happened to run).
- ``documents_requested → lapsed`` when the requested documents were not supplied
  (the application re-submitted) within 60 days of the request.
- ``approved | effective → lapsed`` when no certificate was collected within 60 days
  of the acceptance email; the download codes stop working with it (collection
  refuses a lapsed application with ``application_lapsed``) and the provider leaves
  the public registry (which lists effective registrations only). An approved
  application with nothing collected that the job first sees after its collection
  deadline (the job did not run between day 14 and day 60) lapses directly, without
  an ``effective`` step and email in the same run.

Each transition is recorded with actor ``system`` and a reason naming the rule and
its dates, and sends a templated email (``registration_effective``,
``lapsed_documents``, ``lapsed_uncollected``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from ca.models import CertificateRecord, CertificateStatus
from registration import rules
from registration.changes import close_pending_changes
from registration.lifecycle import REGISTERED, SYSTEM_ACTOR, Action
from registration.models import Application, ApplicationStatus
from registration.notices import notify, record_transition

#: Applications moved per rule and run (the next run continues).
BATCH = 500

_APPROVED = frozenset({ApplicationStatus.APPROVED})
_DOCUMENTS_REQUESTED = frozenset({ApplicationStatus.DOCUMENTS_REQUESTED})


@dataclass(slots=True)
class TimeRuleResult:
    """References moved by one run, per rule."""

    effective: list[str] = field(default_factory=list)
    lapsed_documents: list[str] = field(default_factory=list)
    lapsed_uncollected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for ``ehrca tasks run``."""
        return (
            f"effective {len(self.effective)}, lapsed (documents) "
            f"{len(self.lapsed_documents)}, lapsed (uncollected) "
            f"{len(self.lapsed_uncollected)}"
        )


def first_collection(session: Session, reference: str) -> dt.datetime | None:
    """When the first certificate of ``reference`` was issued (revoked ones count: they
    were collected), or ``None``."""
    return session.scalar(
        select(func.min(CertificateRecord.issued_at)).where(
            CertificateRecord.provider_reference == reference,
            CertificateRecord.status.in_((CertificateStatus.ISSUED, CertificateStatus.REVOKED)),
            CertificateRecord.issued_at.is_not(None),
        )
    )


def _collected() -> ColumnElement[bool]:
    """SQL: the application has at least one collected certificate."""
    return (
        select(CertificateRecord.id)
        .where(
            CertificateRecord.provider_reference == Application.reference,
            CertificateRecord.status.in_((CertificateStatus.ISSUED, CertificateStatus.REVOKED)),
        )
        .exists()
    )


def _candidates(
    session: Session,
    statuses: frozenset[ApplicationStatus],
    moment: InstrumentedAttribute[dt.datetime | None],
    due: dt.datetime,
    *criteria: ColumnElement[bool],
) -> list[int]:
    """Ids of up to :data:`BATCH` applications in one of ``statuses`` whose ``moment``
    is at or before ``due`` (and that meet ``criteria``), oldest id first."""
    return list(
        session.scalars(
            select(Application.id)
            .where(Application.status.in_(statuses), moment.is_not(None), moment <= due, *criteria)
            .order_by(Application.id)
            .limit(BATCH)
        )
    )


def _lock(
    session: Session, application_id: int, statuses: frozenset[ApplicationStatus]
) -> Application | None:
    """The application, row-locked and fresh, if it is still in one of ``statuses``."""
    application = session.scalars(
        select(Application)
        .where(Application.id == application_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if application is None or application.status not in statuses:
        session.rollback()
        return None
    return application


def _day(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).date().isoformat()


def apply_time_rules(session: Session, *, now: dt.datetime) -> TimeRuleResult:
    """Apply every due time rule once (commits per application).

    Args:
        now: the injected clock's time (aware UTC).

    Returns:
        The references moved, per rule.
    """
    result = TimeRuleResult()

    for app_id in _candidates(
        session,
        _APPROVED,
        Application.accepted_at,
        now - rules.EFFECTIVE_AFTER,
        # Not also past the collection deadline uncollected: that one lapses below.
        _collected() | (Application.accepted_at > now - rules.COLLECTION_DEADLINE),
    ):
        application = _lock(session, app_id, _APPROVED)
        if application is None or application.accepted_at is None:
            continue
        effective_at = application.accepted_at + rules.EFFECTIVE_AFTER
        record_transition(
            session,
            application,
            Action.BECOME_EFFECTIVE,
            actor=SYSTEM_ACTOR,
            reason=f"14 days after the acceptance email of {_day(application.accepted_at)}",
            now=now,
        )
        application.effective_at = effective_at
        notify(
            session,
            application,
            "registration_effective",
            now=now,
            effective_on=_day(effective_at),
            accepted_on=_day(application.accepted_at),
        )
        session.commit()
        result.effective.append(application.reference)

    for app_id in _candidates(
        session,
        _DOCUMENTS_REQUESTED,
        Application.decided_at,
        now - rules.DOCUMENTS_DEADLINE,
    ):
        application = _lock(session, app_id, _DOCUMENTS_REQUESTED)
        if application is None or application.decided_at is None:
            continue
        requested_on = _day(application.decided_at)
        deadline_on = _day(application.decided_at + rules.DOCUMENTS_DEADLINE)
        record_transition(
            session,
            application,
            Action.LAPSE,
            actor=SYSTEM_ACTOR,
            reason=(
                f"the documents requested on {requested_on} were not supplied within "
                f"60 days (by {deadline_on})"
            ),
            now=now,
        )
        notify(
            session,
            application,
            "lapsed_documents",
            now=now,
            requested_on=requested_on,
            deadline_on=deadline_on,
        )
        session.commit()
        result.lapsed_documents.append(application.reference)

    for app_id in _candidates(
        session,
        REGISTERED,
        Application.accepted_at,
        now - rules.COLLECTION_DEADLINE,
        ~_collected(),
    ):
        application = _lock(session, app_id, REGISTERED)
        if application is None or application.accepted_at is None:
            continue
        if first_collection(session, application.reference) is not None:
            session.rollback()  # collected meanwhile: it stays approved or effective
            continue
        accepted_on = _day(application.accepted_at)
        deadline_on = _day(application.accepted_at + rules.COLLECTION_DEADLINE)
        record_transition(
            session,
            application,
            Action.LAPSE,
            actor=SYSTEM_ACTOR,
            reason=(
                f"no certificate was collected within 60 days of the acceptance email of "
                f"{accepted_on} (by {deadline_on})"
            ),
            now=now,
        )
        close_pending_changes(session, application, reason="the registration lapsed", now=now)
        notify(
            session,
            application,
            "lapsed_uncollected",
            now=now,
            accepted_on=accepted_on,
            deadline_on=deadline_on,
        )
        session.commit()
        result.lapsed_uncollected.append(application.reference)

    return result
