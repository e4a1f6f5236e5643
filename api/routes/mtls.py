"""The mTLS listener's routes. Every request is checked against revocation status,
because a CRL loaded in the TLS layer does not cover connections opened before a
revocation (DESIGN.md, mTLS on uvicorn)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from api.deps import ServicesDep, SessionDep
from api.tls import client_certificate_from_scope
from ca.errors import DomainError, ErrorCategory
from ca.models import CertificateRecord, CertificateStatus
from registration.service import find_service_location
from revocation.queries import resolve_presented

router = APIRouter(prefix="/mtls", tags=["mtls"])


class ClientCertificateRefused(DomainError):
    """The presented certificate is missing, unknown, revoked or expired."""

    code = "client_certificate_refused"
    category = ErrorCategory.FORBIDDEN


class WhoAmI(BaseModel):
    """Who the presented secure connection certificate belongs to."""

    provider_reference: str | None
    service_location: int | None
    service_location_name: str | None
    serial_number: str
    subject: str
    not_valid_after: str


def verified_client(
    request: Request, session: SessionDep, services: ServicesDep
) -> CertificateRecord:
    """The stored record of the certificate presented on this connection.

    Raises:
        ClientCertificateRefused: code ``client_certificate_missing``,
            ``client_certificate_unknown`` (not issued by this CA's database),
            ``client_certificate_revoked`` or ``client_certificate_expired``.
    """
    try:
        certificate = client_certificate_from_scope(request.scope)
    except ValueError as exc:  # the TLS layer handed over something that is not a certificate
        raise ClientCertificateRefused(
            "the client certificate cannot be parsed", code="client_certificate_unknown"
        ) from exc
    if certificate is None:
        raise ClientCertificateRefused(
            "a client certificate is required", code="client_certificate_missing"
        )
    presented = resolve_presented(session, certificate)
    if presented.issuer_id is not None and services.revocation_status.is_revoked(
        presented.issuer_id, presented.serial_hex
    ):
        raise ClientCertificateRefused(
            "the client certificate has been revoked", code="client_certificate_revoked"
        )
    record = presented.record
    if record is None:
        raise ClientCertificateRefused(
            "the client certificate was not issued by this CA", code="client_certificate_unknown"
        )
    if record.status is CertificateStatus.REVOKED:
        raise ClientCertificateRefused(
            "the client certificate has been revoked", code="client_certificate_revoked"
        )
    now = services.clock()
    if not record.not_valid_before <= now <= record.not_valid_after:
        raise ClientCertificateRefused(
            "the client certificate is outside its validity period",
            code="client_certificate_expired",
        )
    return record


VerifiedClient = Annotated[CertificateRecord, Depends(verified_client)]


@router.get("/whoami")
def whoami(record: VerifiedClient, session: SessionDep) -> WhoAmI:
    """The provider reference, service location, serial and subject of the presented
    certificate."""
    location = find_service_location(session, record.service_location_id)
    return WhoAmI(
        provider_reference=record.provider_reference,
        service_location=location.number if location else None,
        service_location_name=location.name_en if location else None,
        serial_number=record.serial_number,
        subject=record.subject,
        not_valid_after=record.not_valid_after.isoformat(),
    )
