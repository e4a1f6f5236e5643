"""The expiry-notice job (``certificate.expiry_notices`` in ``api/tasks.py``): glue
between issuance (which certificates expire when, the mail) and registration (whom to
tell, in which language) — issuance never imports registration (DESIGN.md)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.services import Services
from ca.models import CertificateRecord
from issuance.expiry import Contact, queue_expiry_notices
from registration.service import find_service_location


def applicant_contact(session: Session, record: CertificateRecord) -> Contact | None:
    """The applicant of the service location ``record`` belongs to (contact email and
    language of the application), or ``None`` if the location is gone."""
    location = find_service_location(session, record.service_location_id)
    if location is None:
        return None
    application = location.application
    provider_name = (
        application.name_zh
        if application.language != "en" and application.name_zh
        else application.name_en or application.reference
    )
    location_name = (
        location.name_zh if application.language != "en" and location.name_zh else location.name_en
    )
    return Contact(
        recipient=application.contact_email,
        language=application.language,
        context={
            "provider_name": provider_name,
            "reference": application.reference,
            "location_number": location.number,
            "location_name": location_name,
        },
    )


def expiry_notices_task(services: Services) -> str:
    """Queue the expiry notices due now (30, 14, 7 and 1 days before notAfter, once
    each); the ``mail.deliver`` task sends them."""
    with services.sessions() as session:
        queued = queue_expiry_notices(
            session,
            now=services.clock(),
            lookup=applicant_contact,
            base_url=services.settings.public_base_url,
        )
    return f"queued {queued} expiry notices"
