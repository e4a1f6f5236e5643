"""Renewal over mTLS: ``POST /mtls/renew`` on the mTLS listener.

A clinic machine presents its current, valid secure connection certificate (checked
per request by :func:`api.routes.mtls.verified_client`: known, not revoked, inside
its validity) and sends a CSR for a new key. Within the renewal window
(``EHRCA_RENEWAL_WINDOW_DAYS``, default 30 days before notAfter; earlier: 409
``renewal_too_early``) it gets a new certificate for the same service location, and
the current one is revoked as superseded once the new one is issued.

If the response is lost after the old certificate was revoked, the machine cannot
renew again (its certificate is revoked); the applicant finds the new serial in the
application review and downloads the certificate with ``GET
/api/v1/certificates/{serial}``, which pairs with the key the machine kept.
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import ServicesDep, SessionDep
from api.routes.mtls import VerifiedClient
from api.routes.replacement import revoke_superseded
from api.services import Services
from ca.models import CertificateRecord
from issuance.service import ApprovedLocation, RenewalNotAllowed, renew_with_csr
from registration.schemas import Strict
from registration.service import approved_location, find_service_location

router = APIRouter(prefix="/mtls", tags=["mtls"])


class RenewIn(Strict):
    """``csr``: a PKCS#10 request (PEM) for the machine's new key."""

    csr: str = Field(min_length=1, max_length=32 * 1024)


class RenewalOut(BaseModel):
    """The new certificate and what happened to the presented one."""

    serial_number: str
    certificate_pem: str
    chain_pem: str
    not_valid_before: str
    not_valid_after: str
    ignored: list[str]
    replaces_serial_number: str
    replaced_revoked: bool


def _location(session: Session, record: CertificateRecord) -> ApprovedLocation:
    location = find_service_location(session, record.service_location_id)
    if location is None:
        raise RenewalNotAllowed("this certificate does not belong to a service location")
    return approved_location(location.application, location.number)


def renew_presented_certificate(
    session: Session, services: Services, record: CertificateRecord, csr: bytes
) -> RenewalOut:
    """The renewal use case: registration's location → issuance → revocation.

    Raises:
        issuance.service.RenewalNotAllowed, RenewalTooEarly, RenewalKeyReused; the CSR
        and pipeline errors of ``issuance.service.collect_with_csr``; registration's
        ``NotCollectable`` when the registration lapsed or was withdrawn.
    """
    location = _location(session, record)
    collected = renew_with_csr(
        session,
        services.issuance,
        location,
        current=record,
        csr=csr,
        now=services.clock(),
        renewal_window=dt.timedelta(days=services.settings.renewal_window_days),
    )
    revoked = revoke_superseded(
        session,
        services,
        collected.supersedes,
        actor=f"mtls:{record.serial_number}",
        actor_role="applicant",
        provider_reference=location.provider_reference,
    )
    pem = serialization.Encoding.PEM
    certificate = collected.certificate
    return RenewalOut(
        serial_number=collected.record.serial_number,
        certificate_pem=certificate.public_bytes(pem).decode(),
        chain_pem="".join(c.public_bytes(pem).decode() for c in collected.chain),
        not_valid_before=certificate.not_valid_before_utc.isoformat(),
        not_valid_after=certificate.not_valid_after_utc.isoformat(),
        ignored=list(collected.ignored),
        replaces_serial_number=record.serial_number,
        replaced_revoked=record.serial_number in revoked or collected.replayed,
    )


@router.post("/renew", status_code=201)
def renew(
    data: RenewIn, record: VerifiedClient, session: SessionDep, services: ServicesDep
) -> RenewalOut:
    """Renew the presented certificate for the key in ``csr`` (within the renewal window);
    the presented certificate is revoked as superseded."""
    return renew_presented_certificate(session, services, record, data.csr.encode("utf-8"))
