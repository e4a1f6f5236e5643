"""Reviewer routes for changes after registration: the change-request queue and the
decisions on additions of service locations (the application queue and decisions are
in ``officer.py``)."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from registration import changes
from registration.schemas import ChangeDecisionIn, ChangeRequestOut, ChangeRequestPage

router = APIRouter(prefix="/api/v1/officer/change-requests", tags=["officer"])
log = logging.getLogger("ehrca.api")

#: Largest offset accepted (SQLite and PostgreSQL refuse larger OFFSET values).
MAX_OFFSET = 2**31 - 1


@router.get("")
def list_change_requests(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: Annotated[Literal["pending", "approved", "rejected", "done"] | None, Query()] = None,
    kind: Annotated[
        Literal["add_service_location", "remove_service_location", "withdraw"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ChangeRequestPage:
    """Change requests, oldest first (reviewers and admins), e.g. ``?status=pending``."""
    principal.require_role("reviewer", "admin")
    total, rows = changes.list_change_requests(
        session, status=status, kind=kind, limit=limit, offset=offset
    )
    return ChangeRequestPage(
        total=total, limit=limit, offset=offset, items=[changes.change_view(c) for c in rows]
    )


@router.get("/{change_id}")
def read_change_request(
    change_id: int, session: SessionDep, principal: CurrentPrincipal
) -> ChangeRequestOut:
    """One change request (reviewers and admins)."""
    principal.require_role("reviewer", "admin")
    change, _application = changes.get_change_request(session, change_id, principal)
    return changes.change_view(change)


@router.post("/{change_id}/decision")
def decide_change_request(
    change_id: int,
    data: ChangeDecisionIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> ChangeRequestOut:
    """Approve or reject a pending addition, with a reason the applicant sees (reviewers
    only). Approval creates the service location and emails its download code; 409
    ``change_request_decided`` or ``registration_not_active``."""
    principal.require_role("reviewer")
    change, _application = changes.get_change_request(session, change_id, principal)
    changes.decide_change(
        session,
        change,
        decision=data.decision,
        reason=data.reason,
        officer=principal,
        ctx=services.approval,
        now=services.clock(),
    )
    try:
        services.deliver_mail()
    except Exception:  # mail stays in the outbox and is retried; the decision stands
        log.exception("mail delivery after a change decision failed")
    return changes.change_view(change)
