"""Technical support requests (``POST /api/v1/applications/{reference}/support-requests``).

DESIGN.md: "Technical support requests are accepted within 14 days of acceptance".
The window opens with the acceptance email (``Application.accepted_at``) and closes
14 days later, the moment the registration becomes effective: a request at
``accepted_at + 13 days 23:59:59`` is accepted, one at ``accepted_at + 14 days`` is
refused with 409 ``support_window_closed`` (``detail.window_closed_at`` says when).
Before acceptance (draft, submitted, rejected ...) there is no window: 409
``support_not_available``. Only the applicant (the application reference's login)
may ask.

Requests are stored (``support_requests``) and audited (``support.requested``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.errors import ErrorCategory
from registration import rules
from registration.accounts import Principal
from registration.errors import Forbidden, RegistrationError
from registration.models import Application
from registration.schemas import Strict
from registration.staff_models import SupportRequest

#: How long after the acceptance email support requests are accepted: "those 14
#: days" before the registration takes effect (DESIGN.md, issue 3).
SUPPORT_WINDOW = rules.EFFECTIVE_AFTER


class SupportNotAvailable(RegistrationError):
    """The application has not been accepted, so no support window is open."""

    code = "support_not_available"
    category = ErrorCategory.CONFLICT


class SupportWindowClosed(RegistrationError):
    """The 14 days after the acceptance email are over (``detail.window_closed_at``)."""

    code = "support_window_closed"
    category = ErrorCategory.CONFLICT


class SupportRequestIn(Strict):
    """A support request: a one-line subject and a message."""

    subject: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        AfterValidator(rules.check_single_line),
    ]
    message: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=4000),
        AfterValidator(rules.check_text),
    ]


def support_window(application: Application) -> tuple[dt.datetime, dt.datetime] | None:
    """``(opens, closes)`` of the support window, or None before acceptance. A request
    is accepted when ``opens <= now < closes``."""
    if application.accepted_at is None:
        return None
    return application.accepted_at, application.accepted_at + SUPPORT_WINDOW


def create_support_request(
    session: Session,
    application: Application,
    principal: Principal,
    data: SupportRequestIn,
    *,
    now: dt.datetime,
) -> SupportRequest:
    """Record a technical support request of ``application``'s applicant (commits).

    Raises:
        registration.errors.Forbidden: ``applicant_only``, the caller is not the
            applicant.
        SupportNotAvailable: the application has not been accepted.
        SupportWindowClosed: 14 days or more after the acceptance email.
    """
    if principal.kind != "applicant" or principal.subject != application.reference:
        raise Forbidden("only the applicant can request technical support", code="applicant_only")
    window = support_window(application)
    if window is None:
        raise SupportNotAvailable(
            "technical support is available once the application is accepted; it is "
            f"{application.status.value}"
        )
    opens, closes = window
    if not opens <= now < closes:
        raise SupportWindowClosed(
            "technical support requests are accepted within 14 days of the acceptance "
            f"email; the window closed at {closes.isoformat()}",
            window_closed_at=closes.isoformat(),
        )
    request = SupportRequest(
        application_id=application.id,
        subject=data.subject,
        message=data.message,
        created_by=principal.subject,
        created_at=now,
    )
    session.add(request)
    session.flush()
    record_event(
        session,
        "support.requested",
        actor=principal.subject,
        now=now,
        subject=application.reference,
        details={"support_request_id": request.id},
    )
    session.commit()
    return request


def list_support_requests(
    session: Session, principal: Principal, *, limit: int, offset: int
) -> list[tuple[SupportRequest, str]]:
    """Newest first, with each request's application reference (reviewers and admins).

    Raises:
        registration.errors.Forbidden: another role.
    """
    principal.require_role("reviewer", "admin")
    rows = session.execute(
        select(SupportRequest, Application.reference)
        .join(Application, Application.id == SupportRequest.application_id)
        .order_by(SupportRequest.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return [(request, reference) for request, reference in rows]
