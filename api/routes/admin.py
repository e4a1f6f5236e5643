"""Admin routes: the audit trail.

``GET /api/v1/admin/audit-events?event_type=&actor=&subject=&since=&until=&limit=&offset=``
(admins only; 403 ``role_not_allowed`` for every other role) lists events in chain
order with their hashes, so an admin can check a page against ``ehrca audit verify``.
``since``/``until`` are RFC 3339 with offset (``since <= at < until``), years 1-9999
once in UTC (422 ``invalid_request`` otherwise).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CurrentPrincipal, SessionDep
from ca.audit import AuditEvent, AuditQuery, list_events
from registration.schemas import UTCDateTime

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

#: Largest offset accepted (PostgreSQL and SQLite refuse larger OFFSET values).
MAX_OFFSET = 2**31 - 1
#: Filter values never contain NUL (PostgreSQL refuses it in a query).
NO_NUL = r"^[^\x00]*$"


class AuditEventOut(BaseModel):
    """One audit event (``details`` as recorded; never secrets)."""

    seq: int
    at: dt.datetime
    event_type: str
    actor: str
    subject: str | None
    details: dict[str, Any]
    prev_hash: str
    row_hash: str

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        """The view of a stored event."""
        return cls(
            seq=event.seq,
            at=event.at,
            event_type=event.event_type,
            actor=event.actor,
            subject=event.subject,
            details=json.loads(event.details),
            prev_hash=event.prev_hash,
            row_hash=event.row_hash,
        )


class AuditEventPage(BaseModel):
    """A page of audit events and how many match in all."""

    total: int
    limit: int
    offset: int
    items: list[AuditEventOut]


@router.get("/audit-events")
def audit_events(
    session: SessionDep,
    principal: CurrentPrincipal,
    event_type: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    actor: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    subject: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    # UTC at validation: an offset pushing a bound outside years 1-9999 (e.g.
    # 0001-01-01T00:00:00+05:00) is a 422, not an OverflowError in the query.
    since: Annotated[UTCDateTime | None, Query()] = None,
    until: Annotated[UTCDateTime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AuditEventPage:
    """Audit events matching every filter given, oldest first (admins only)."""
    principal.require_role("admin")
    total, rows = list_events(
        session,
        AuditQuery(
            event_type=event_type,
            actor=actor,
            subject=subject,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        ),
    )
    return AuditEventPage(
        total=total, limit=limit, offset=offset, items=[AuditEventOut.of(r) for r in rows]
    )
