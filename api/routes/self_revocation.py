"""Applicant self-revocation: a provider revokes one of its own secure connection
certificates, with keyCompromise or superseded only (``revocation.policy``).

``POST /api/v1/applications/{reference}/certificates/{serial}/revoke``
{reason, invalidity_date?} → 200 as the officer route: the revocation is committed
before the answer, the CRL re-signed, the OCSP response replaced, and the mTLS listener
refuses the certificate from the next request on. A serial of another provider is
404 like an unknown one (serials of others cannot be probed); an already revoked one
is 409 ``certificate_already_revoked`` with the existing revocation.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from api.routes.officer import RevocationOut, RevokeIn, parse_serial
from registration.errors import Forbidden
from registration.service import get_application
from revocation.policy import parse_reason
from revocation.service import revoke_and_publish

router = APIRouter(prefix="/api/v1/applications", tags=["applications"])


@router.post("/{reference}/certificates/{serial}/revoke")
def revoke_own_certificate(
    reference: str,
    serial: str,
    data: RevokeIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> RevocationOut:
    """Revoke one of the application's certificates (the applicant only): reason
    ``keyCompromise`` (with an optional ``invalidity_date``) or ``superseded``."""
    if principal.kind != "applicant":
        raise Forbidden("only the applicant can do this", code="applicant_only")
    application = get_application(session, reference, principal)
    outcome = revoke_and_publish(
        session,
        services.revocation,
        serial_hex=parse_serial(serial),
        reason=parse_reason(data.reason),
        invalidity_date=data.invalidity_date,
        actor=application.reference,
        actor_role="applicant",
        now=services.clock(),
        provider_reference=application.reference,
    )
    return RevocationOut.of(outcome)
