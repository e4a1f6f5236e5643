"""Applicant routes for changes after registration: ask to add a service location
(reviewed), remove one, withdraw the registration; and the change history."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api import changes as use_cases
from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from registration import changes, service
from registration.accounts import Principal
from registration.errors import Forbidden
from registration.schemas import ChangeRequestIn, ChangeRequestOut, ChangeRequestPage, ReasonIn

router = APIRouter(prefix="/api/v1/applications", tags=["changes"])

#: Largest offset accepted (SQLite and PostgreSQL refuse larger OFFSET values).
MAX_OFFSET = 2**31 - 1


class RemovalOut(BaseModel):
    """A removed service location and the serial numbers revoked with it
    (cessationOfOperation), committed together."""

    service_location_id: int
    removed_at: dt.datetime
    revoked_serial_numbers: list[str]


class WithdrawalOut(BaseModel):
    """A withdrawn registration and every serial number revoked with it, committed
    together."""

    reference: str
    status: str
    revoked_serial_numbers: list[str]


def _require_applicant(principal: Principal) -> None:
    if principal.kind != "applicant":
        raise Forbidden("only the applicant can do this", code="applicant_only")


@router.post("/{reference}/change-requests", status_code=201)
def request_change(
    reference: str,
    data: ChangeRequestIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> ChangeRequestOut:
    """Ask to add a service location to an approved or effective registration. A
    reviewer approves it (the new location then gets a download code by email and its
    own certificate) or rejects it, with a reason (409 ``registration_not_active``)."""
    _require_applicant(principal)
    application = service.get_application(session, reference, principal)
    change = changes.request_service_location(
        session,
        application,
        data.service_location,
        actor=principal.subject,
        reason=data.reason,
        now=services.clock(),
    )
    return changes.change_view(change)


@router.get("/{reference}/change-requests")
def list_changes(
    reference: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ChangeRequestPage:
    """The registration's change history (additions, removals, withdrawal), oldest
    first, with who asked, who decided and why."""
    application = service.get_application(session, reference, principal)
    total, rows = changes.list_change_requests(
        session, application=application, limit=limit, offset=offset
    )
    return ChangeRequestPage(
        total=total, limit=limit, offset=offset, items=[changes.change_view(c) for c in rows]
    )


@router.post("/{reference}/service-locations/{location_id}/remove")
def remove_service_location(
    reference: str,
    location_id: int,
    data: ReasonIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> RemovalOut:
    """Remove a service location from the registration: its certificates are revoked
    with cessationOfOperation in the same transaction and its download codes stop
    working (409
    ``last_service_location``: withdraw instead; 410 ``service_location_removed``)."""
    _require_applicant(principal)
    application = service.get_application(session, reference, principal)
    location, revoked = use_cases.remove_service_location(
        services, session, application, location_id, principal=principal, reason=data.reason
    )
    assert location.removed_at is not None
    return RemovalOut(
        service_location_id=location.number,
        removed_at=location.removed_at,
        revoked_serial_numbers=list(revoked),
    )


@router.post("/{reference}/withdraw")
def withdraw(
    reference: str,
    data: ReasonIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> WithdrawalOut:
    """Withdraw the whole registration: every certificate is revoked with
    cessationOfOperation, it leaves the public registry (409
    ``invalid_state_transition`` unless approved or effective)."""
    _require_applicant(principal)
    application = service.get_application(session, reference, principal)
    revoked = use_cases.withdraw_registration(
        services, session, application, principal=principal, reason=data.reason
    )
    return WithdrawalOut(
        reference=application.reference,
        status=application.status.value,
        revoked_serial_numbers=list(revoked),
    )
