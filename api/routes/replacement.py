"""Lost key: a security officer issues a replacement download code for a service
location; collecting with it revokes the location's previous certificate.

``POST /api/v1/officer/applications/{reference}/service-locations/{location_id}/replacement-code``
{reason: superseded | keyCompromise} → 201 with what was done, never the code: the
code goes to the applicant's contact address through the outbox (the same channel as
the login-instructions email), so no officer ever sees it.

Issuance never imports revocation (DESIGN.md), so the revocation of superseded
certificates — after a collection with a replacement code, or after a renewal — is
orchestrated here, in ``api/``, by :func:`revoke_superseded`: each revocation is
committed (``revocation.service.revoke_certificate``), marked in this process's
revocation status (the mTLS listener refuses the old certificate from the next
request on) and the issuer's CRL is re-signed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Literal

from cryptography import x509
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.deps import CurrentPrincipal, ServicesDep, SessionDep
from api.services import Services
from issuance.service import Supersession, issue_replacement_code
from registration import service
from registration.schemas import Strict
from revocation.errors import AlreadyRevoked, CertificateNotFound
from revocation.service import publish_crl, revoke_certificate

router = APIRouter(prefix="/api/v1/officer", tags=["officer"])
log = logging.getLogger("ehrca.api")


class ReplacementIn(Strict):
    """``reason`` (RFC 5280 5.3.1 name) for revoking the current certificate when the
    replacement is collected: ``superseded`` (lost, not known to be compromised) or
    ``keyCompromise`` (its key must never be certified again)."""

    reason: Literal["superseded", "keyCompromise"] = "superseded"


class ReplacementOut(BaseModel):
    """What the officer did (the code itself is only in the applicant's email)."""

    reference: str
    service_location: int
    replaces_serial_number: str | None
    revocation_reason: str
    code_expires_at: dt.datetime
    mailed_to: str


def revoke_superseded(
    session: Session,
    services: Services,
    supersedes: Sequence[Supersession],
    *,
    actor: str,
    actor_role: str,
    provider_reference: str | None = None,
) -> list[str]:
    """Revoke each superseded certificate (committed one by one), mark it revoked for
    the mTLS listener and re-sign its issuer's CRL. Never raises: the new certificate
    is issued already; a failure is logged (the old certificate stays valid until it
    expires or an officer revokes it).

    Args:
        actor / actor_role: recorded and checked by ``revocation.policy`` (an applicant
            may use superseded and keyCompromise, a security officer any reason).

    Returns:
        The serial numbers revoked now (already revoked ones are skipped).
    """
    revoked: list[str] = []
    issuers: set[int] = set()
    now = services.clock()
    for item in supersedes:
        try:
            result = revoke_certificate(
                session,
                serial_hex=item.serial_number,
                reason=x509.ReasonFlags(item.reason),
                actor=actor,
                actor_role=actor_role,
                now=now,
                provider_reference=provider_reference,
            )
        except (AlreadyRevoked, CertificateNotFound):
            session.rollback()
            continue
        except Exception:  # the new certificate stands; log and move on
            session.rollback()
            log.exception("revoking superseded certificate %s failed", item.serial_number)
            continue
        services.revocation_status.mark_revoked(result.revocation.issuer_id, item.serial_number)
        issuers.add(result.revocation.issuer_id)
        revoked.append(item.serial_number)
    published = False
    for issuer_id in sorted(issuers):
        try:
            publish_crl(
                session,
                services.keystore,
                issuer_id,
                now=services.clock(),
                validity=services.ca_config.crl_validity,
            )
            published = True
        except Exception:  # the revocations are committed; the scheduler republishes
            log.exception("CRL publication after a superseding issuance failed")
    if published:
        services.notify_crl_published()
    return revoked


def revoke_replaced_on_collection(
    session: Session, services: Services, supersedes: Sequence[Supersession]
) -> list[str]:
    """After a collection with a replacement code: revoke what the officer's code
    replaces, under the officer's authority (the reason was the officer's choice)."""
    if not supersedes:
        return []
    return revoke_superseded(
        session,
        services,
        supersedes,
        actor=f"{supersedes[0].requested_by or 'security officer'} (replacement code)",
        actor_role="security_officer",
    )


@router.post(
    "/applications/{reference}/service-locations/{location_id}/replacement-code",
    status_code=201,
)
def issue_replacement(
    reference: str,
    location_id: int,
    data: ReplacementIn,
    session: SessionDep,
    services: ServicesDep,
    principal: CurrentPrincipal,
) -> ReplacementOut:
    """Issue a replacement download code for a lost key (security officers only). Older
    unused codes of the location stop working; the new code is emailed to the
    applicant; collecting with it revokes the current certificate with ``reason``."""
    principal.require_role("security_officer")
    application = service.get_application(session, reference, principal)
    location = service.approved_location(application, location_id)
    result = issue_replacement_code(
        session,
        location,
        reason=data.reason,
        officer=principal.subject,
        recipient=application.contact_email,
        language=application.language,
        base_url=services.settings.public_base_url,
        now=services.clock(),
        validity=dt.timedelta(days=services.settings.download_code_validity_days),
    )
    try:
        services.deliver_mail()
    except Exception:  # mail stays in the outbox and is retried; the code stands
        log.exception("mail delivery after a replacement code failed")
    return ReplacementOut(
        reference=reference,
        service_location=result.service_location,
        replaces_serial_number=result.replaces_serial_number,
        revocation_reason=result.reason,
        code_expires_at=result.expires_at,
        mailed_to=application.contact_email,
    )
