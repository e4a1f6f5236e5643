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
from registration.schemas import ApplicationOut, DecisionIn, Strict
from revocation.errors import CertificateNotFound
from revocation.policy import parse_reason
from revocation.service import publish_all_crls, publish_crl, revoke_certificate

router = APIRouter(prefix="/api/v1/officer", tags=["officer"])
log = logging.getLogger("ehrca.api")


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
    """A committed revocation and the CRL that lists it."""

    serial_number: str
    revocation_date: dt.datetime
    revocation_reason: str
    invalidity_date: dt.datetime | None
    crl_number: int | None


class CRLPublished(BaseModel):
    """CRLs published by hand."""

    issuer: str
    crl_number: int
    this_update: dt.datetime
    next_update: dt.datetime


@router.get("/applications")
def list_applications(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: Annotated[
        Literal[
            "draft",
            "submitted",
            "documents_requested",
            "approved",
            "rejected",
            "effective",
            "lapsed",
        ]
        | None,
        Query(),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ApplicationPage:
    """The reviewer queue, oldest submission first."""
    principal.require_role("reviewer", "admin")
    total, rows = service.list_applications(session, status=status, limit=limit, offset=offset)
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
    try:
        serial_hex = serial_to_hex(parse_serial_hex(serial))
    except ValueError as exc:
        raise CertificateNotFound(f"no certificate with serial number {serial!r}") from exc
    result = revoke_certificate(
        session,
        serial_hex=serial_hex,
        reason=parse_reason(data.reason),
        invalidity_date=data.invalidity_date,
        actor=principal.subject,
        actor_role=principal.role,
        now=services.clock(),
    )
    services.revocation_status.mark_revoked(result.revocation.issuer_id, serial_hex)
    crl_number: int | None = None
    try:
        crl = publish_crl(
            session,
            services.keystore,
            result.revocation.issuer_id,
            now=services.clock(),
            validity=services.ca_config.crl_validity,
        )
        crl_number = crl.crl_number
        services.notify_crl_published()
    except Exception:  # the revocation is committed; the scheduler republishes
        log.exception("CRL publication after revocation failed")
    rev = result.revocation
    return RevocationOut(
        serial_number=rev.serial_number,
        revocation_date=rev.revocation_date,
        revocation_reason=rev.revocation_reason,
        invalidity_date=rev.invalidity_date,
        crl_number=crl_number,
    )


@router.post("/crl/publish")
def publish(
    session: SessionDep, services: ServicesDep, principal: CurrentPrincipal
) -> list[CRLPublished]:
    """Re-sign every CA's CRL now (security officers and admins)."""
    principal.require_role("security_officer", "admin")
    rows = publish_all_crls(
        session, services.keystore, now=services.clock(), validity=services.ca_config.crl_validity
    )
    services.notify_crl_published()
    return [
        CRLPublished(
            issuer=r.issuer.name,
            crl_number=r.crl_number,
            this_update=r.this_update,
            next_update=r.next_update,
        )
        for r in rows
    ]
