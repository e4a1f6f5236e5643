"""Recording what happens to an application: the transition (who and why), the audit
entry and the templated email in the application's language.

Every decision and every deadline goes through :func:`record_transition` and
:func:`notify`, both staged in the caller's transaction, so a transition and its
mail commit together (the mail is delivered later from the outbox, see
``issuance.mail``): a decision is never lost because mail failed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from ca.audit import record_event
from issuance.mail import enqueue_mail
from issuance.models import OutboxMail
from registration import rules
from registration.lifecycle import Action, Event, transition
from registration.models import Application, ApplicationEvent, ServiceLocation


def display_name(application: Application) -> str:
    """The provider's name for mail: Chinese for a Chinese-language application when it
    has one, else English, else the reference."""
    if application.language != "en" and application.name_zh:
        return application.name_zh
    return application.name_en or application.reference


def location_name(application: Application, location: ServiceLocation) -> str:
    """A service location's name in the application's language (English fallback)."""
    if application.language != "en" and location.name_zh:
        return location.name_zh
    return location.name_en


def record_transition(
    session: Session,
    application: Application,
    action: Action,
    *,
    actor: str,
    reason: str | None,
    now: dt.datetime,
) -> Event:
    """Move ``application`` by ``action`` (``registration.lifecycle``), stage the
    :class:`ApplicationEvent` (who, why, when) and an audit entry
    ``application.<action>``. The caller commits.

    Raises:
        registration.lifecycle.TransitionRefused: the move is not allowed now.
    """
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
    record_event(
        session,
        f"application.{action.value}",
        actor=actor,
        now=now,
        subject=application.reference,
        details={"reason": reason, "from": event.from_status.value},
    )
    return event


def notify(
    session: Session,
    application: Application,
    template: str,
    *,
    now: dt.datetime,
    **context: Any,
) -> OutboxMail:
    """Stage the email ``template`` (``issuance/templates/<template>.<lang>.txt``) to the
    application's contact address in its language; ``reference`` and ``provider_name``
    are added to ``context``. The caller commits.

    Raises:
        jinja2.TemplateNotFound, jinja2.UndefinedError: a template or variable is
            missing (a programming error, caught by the template tests).
    """
    language = application.language if application.language in rules.LANGUAGES else "en"
    return enqueue_mail(
        session,
        recipient=application.contact_email,
        template=template,
        language=language,
        context={
            "reference": application.reference,
            "provider_name": display_name(application),
            **context,
        },
        now=now,
    )
