"""Officer routes: the review queue and decisions (reviewers), revocation and CRL
publication (security officers)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from ca.serials import parse_serial_hex, serial_to_hex
from registration import service
from registration.schemas import ApplicationOut, DecisionIn, ProviderType, Strict, UTCDateTime
from revocation.errors import CertificateNotFound
from revocation.policy import parse_reason
from revocation.service import (
    RevocationOutcome,
    publish_crls_with_policy,
    record_manual_publication,
    revoke_and_publish,
)

router = APIRouter(prefix="/api/v1/officer", tags=["officer"])
log = logging.getLogger("ehrca.api")

#: Largest queue offset accepted: beyond it SQLite (64-bit) and PostgreSQL (bigint)
#: refuse the OFFSET with an error instead of an empty page.
MAX_OFFSET = 2**31 - 1


class ApplicationSummary(BaseModel):
    """One row of the reviewer queue."""

    reference: str
    status: str
    provider_type: str | None
    name_en: str | None
    submitted_at: dt.datetime | None
    created_at: dt.datetime


class ApplicationPage(BaseModel):
    """A page of the reviewer queue."""

    total: int
    limit: int
    offset: int
    items: list[ApplicationSummary]


class RevokeIn(Strict):
    """``reason``: an RFC 5280 5.3.1 name (``keyCompromise``, ``cessationOfOperation`` ...);
    ``invalidity_date``: RFC 3339 with offset, not in the future."""

    reason: str = Field(max_length=32)
    invalidity_date: dt.datetime | None = None


class RevocationOut(BaseModel):
    """A committed revocation and the number of the issuer's full CRL that lists it
    (``null`` if that publication failed: the scheduler re-signs)."""

    serial_number: str
    revocation_date: dt.datetime
    revocation_reason: str
    invalidity_date: dt.datetime | None
    crl_number: int | None

    @classmethod
    def of(cls, outcome: RevocationOutcome) -> RevocationOut:
        """The answer for a :class:`revocation.service.RevocationOutcome`."""
        revocation = outcome.revocation
        return cls(
            serial_number=revocation.serial_number,
            revocation_date=revocation.revocation_date,
            revocation_reason=revocation.revocation_reason,
            invalidity_date=revocation.invalidity_date,
            crl_number=outcome.crl_number,
        )


def parse_serial(serial: str) -> str:
    """A serial from a URL (hex, any case, optional ``0x`` and colons) as 40 lowercase
    hex digits.

    Raises:
        CertificateNotFound: not a serial number (an unparseable one names nothing).
    """
    try:
        return serial_to_hex(parse_serial_hex(serial))
    except ValueError as exc:
        raise CertificateNotFound(f"no certificate with serial number {serial[:64]!r}") from exc


class CRLPublished(BaseModel):
    """CRLs published by hand (``shard``: ``null`` for the full CRL)."""

    issuer: str
    shard: int | None = None
    crl_number: int
    this_update: dt.datetime
    next_update: dt.datetime


@router.get("/applications")
def list_applications(
    session: SessionDep,
    principal: CurrentPrincipal,
    services: ServicesDep,
    status: Annotated[
        Literal[
            "draft",
            "submitted",
            "documents_requested",
            "approved",
            "rejected",
            "effective",
            "lapsed",
            "withdrawn",
        ]
        | None,
        Query(),
    ] = None,
    provider_type: Annotated[ProviderType | None, Query()] = None,
    submitted_before: Annotated[UTCDateTime | None, Query()] = None,
    min_age_days: Annotated[int | None, Query(ge=0, le=3650)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ApplicationPage:
    """The reviewer queue, oldest submission first. Filters: ``status``,
    ``provider_type``, and age: ``submitted_before`` (RFC 3339 with offset) and/or
    ``min_age_days`` (submitted at least that many days ago, by the service clock)."""
    principal.require_role("reviewer", "admin")
    cutoffs = [submitted_before] if submitted_before is not None else []
    if min_age_days is not None:
        cutoffs.append(services.clock() - dt.timedelta(days=min_age_days))
    total, rows = service.list_applications(
        session,
        status=status,
        limit=limit,
        offset=offset,
        provider_type=provider_type,
        submitted_before=min(cutoffs) if cutoffs else None,
    )
    return ApplicationPage(
        total=total,
        limit=limit,
        offset=offset,
        items=[ApplicationSummary.model_validate(r, from_attributes=True) for r in rows],
    )


@router.post("/applications/{reference}/decision")
def decide(
    reference: str,
    data: DecisionIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> ApplicationOut:
    """Approve, reject or request documents, with a reason (reviewers only). Approval
    queues the acceptance and login-instructions emails and delivers them at once."""
    principal.require_role("reviewer")
    application = service.get_application(session, reference, principal)
    service.decide(
        session,
        application,
        decision=data.decision,
        reason=data.reason,
        officer=principal,
        ctx=services.approval,
        now=services.clock(),
    )
    try:
        services.deliver_mail()
    except Exception:  # mail stays in the outbox and is retried; the decision stands
        log.exception("mail delivery after decision failed")
    return service.application_view(session, application)


@router.post("/certificates/{serial}/revoke")
def revoke(
    serial: str,
    data: RevokeIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> RevocationOut:
    """Revoke a certificate (security officers). The revocation is committed before the
    answer; the issuing CA's CRL is re-signed at once and the mTLS listener refuses the
    certificate from the next request on."""
    principal.require_role("security_officer")
    outcome = revoke_and_publish(
        session,
        services.revocation,
        serial_hex=parse_serial(serial),
        reason=parse_reason(data.reason),
        invalidity_date=data.invalidity_date,
        actor=principal.subject,
        actor_role=principal.role,
        now=services.clock(),
    )
    return RevocationOut.of(outcome)


@router.post("/crl/publish")
def publish(
    session: SessionDep, services: ServicesDep, principal: CurrentPrincipal
) -> list[CRLPublished]:
    """Re-sign every CA's CRL now (security officers and admins)."""
    principal.require_role("security_officer", "admin")
    now = services.clock()
    rows = publish_crls_with_policy(session, services.keystore, services.crl_policy, now=now)
    record_manual_publication(session, rows, actor=principal.subject, now=now)
    services.notify_crl_published()
    return [
        CRLPublished(
            issuer=r.issuer.name,
            shard=r.shard,
            crl_number=r.crl_number,
            this_update=r.this_update,
            next_update=r.next_update,
        )
        for r in rows
    ]
