"""Use cases that span registration and revocation: removing a service location and
withdrawing a registration revoke certificates, and the periodic registration jobs.

Registration may not import revocation (DESIGN.md: dependencies point down), so the
orchestration lives here, in ``api/``. Registration stages the change (the location
removed, or the registration withdrawn, with its email) and revocation stages the
revocation of every certificate concerned with ``cessationOfOperation`` (RFC 5280
5.3.1; ``revocation.service.revoke_location_certificates`` /
``revoke_provider_certificates`` with ``commit=False``) in the SAME transaction, which
is then committed: all or nothing. After the commit the revocations are published
(``publish_revocations``: this process's revocation status, so the mTLS listener
refuses the certificates from the next request on, re-signed CRLs and OCSP responses).

A certificate whose collection was in flight while the removal committed can still be
issued afterwards; the periodic job :func:`revocation_sweep_task`
(``registration.revoke_ceased``) finds such certificates
(``registration.changes.certificates_due_for_revocation``) and revokes them.

The revocations are made under the revocation policy's ``security_officer`` reason set
(the applicant's own set is keyCompromise and superseded only): cessationOfOperation
after a removal or withdrawal is the system's consequence of the applicant's change,
and the audit trail records the applicant's reference (or ``system`` for the sweep) as
the actor.
"""

from __future__ import annotations

import logging

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.services import Services
from registration import changes
from registration.accounts import Principal
from registration.lifecycle import SYSTEM_ACTOR
from registration.models import Application, ApplicationStatus, ServiceLocation
from registration.tasks import apply_time_rules
from revocation.service import (
    publish_revocations,
    revoke_location_certificates,
    revoke_provider_certificates,
)

log = logging.getLogger("ehrca.changes")

#: The reason for every revocation caused by a removal or withdrawal.
CESSATION = x509.ReasonFlags.cessation_of_operation
#: The revocation policy role these revocations are made under (see the module note).
REVOCATION_ROLE = "security_officer"


def _deliver(services: Services) -> None:
    try:
        services.deliver_mail()
    except Exception:  # mail stays in the outbox and is retried; the change stands
        log.exception("mail delivery after a registration change failed")


def remove_service_location(
    services: Services,
    session: Session,
    application: Application,
    number: int,
    *,
    principal: Principal,
    reason: str,
) -> tuple[ServiceLocation, tuple[str, ...]]:
    """Remove service location ``number`` and revoke its certificates, in one
    transaction; returns the location and the serial numbers revoked.

    Raises:
        registration.errors.ChangeRefused, ServiceLocationNotFound,
        ServiceLocationRemoved: see ``registration.changes.remove_service_location``
        (nothing is changed). A database error rolls both back.
    """
    now = services.clock()
    location = changes.remove_service_location(
        session,
        application,
        number,
        actor=principal.subject,
        reason=reason,
        now=now,
        commit=False,
    )
    result = revoke_location_certificates(
        session,
        application.reference,
        location.id,
        CESSATION,
        actor=principal.subject,
        actor_role=REVOCATION_ROLE,
        now=now,
        commit=False,
    )
    session.commit()
    publish_revocations(session, services.revocation, result.revocations, now=now)
    _deliver(services)
    return location, result.serial_numbers


def withdraw_registration(
    services: Services,
    session: Session,
    application: Application,
    *,
    principal: Principal,
    reason: str,
) -> tuple[str, ...]:
    """Withdraw the registration and revoke every certificate it has, in one
    transaction; returns the serial numbers revoked.

    Raises:
        registration.lifecycle.TransitionRefused: not approved or effective (nothing is
            changed). A database error rolls both back.
    """
    now = services.clock()
    changes.withdraw(
        session, application, actor=principal.subject, reason=reason, now=now, commit=False
    )
    result = revoke_provider_certificates(
        session,
        application.reference,
        CESSATION,
        actor=principal.subject,
        actor_role=REVOCATION_ROLE,
        now=now,
        commit=False,
    )
    session.commit()
    publish_revocations(session, services.revocation, result.revocations, now=now)
    _deliver(services)
    return result.serial_numbers


def time_rules_task(services: Services) -> str:
    """Periodic job ``registration.time_rules``: effective after 14 days, lapse after
    60 (``registration.tasks``)."""
    with services.sessions() as session:
        result = apply_time_rules(session, now=services.clock())
    return result.summary()


def revocation_sweep_task(services: Services) -> str:
    """Periodic job ``registration.revoke_ceased``: revoke (cessationOfOperation) the
    certificates of removed service locations and withdrawn registrations that are
    still valid, one location or registration per transaction."""
    revoked = failed = 0
    with services.sessions() as session:
        due = changes.certificates_due_for_revocation(session)
        scopes = {(record.provider_reference, record.service_location_id) for record in due}
        withdrawn = set(
            session.scalars(
                select(Application.reference).where(
                    Application.reference.in_({ref for ref, _loc in scopes if ref}),
                    Application.status == ApplicationStatus.WITHDRAWN,
                )
            )
        )
        done: set[tuple[str, int | None]] = set()
        for reference, location_id in sorted(scopes, key=str):
            if reference is None:
                continue
            scope = (reference, None) if reference in withdrawn else (reference, location_id)
            if scope in done:
                continue
            done.add(scope)
            now = services.clock()
            try:
                if scope[1] is None:
                    result = revoke_provider_certificates(
                        session,
                        reference,
                        CESSATION,
                        actor=SYSTEM_ACTOR,
                        actor_role=REVOCATION_ROLE,
                        now=now,
                        context=services.revocation,
                    )
                else:
                    result = revoke_location_certificates(
                        session,
                        reference,
                        scope[1],
                        CESSATION,
                        actor=SYSTEM_ACTOR,
                        actor_role=REVOCATION_ROLE,
                        now=now,
                        context=services.revocation,
                    )
            except Exception:  # one scope's failure must not stop the others
                log.exception("cessation revocations of %s failed", scope)
                failed += 1
                continue
            revoked += len(result.revocations)
    return f"revoked {revoked}, failed {failed}"
