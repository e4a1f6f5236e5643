"""Expiry notices: mail the applicant 30, 14, 7 and 1 days before a service
location's certificate expires, once each.

:func:`queue_expiry_notices` is idempotent and safe to run from several workers:
every (certificate, threshold) pair is a row of ``expiry_notices`` under a unique
constraint, committed together with its outbox mail, so a notice is queued at most
once (a worker that loses the race rolls its mail back). When the task did not run
for a while and several thresholds have passed, one mail goes out, for the nearest
threshold, and the others are recorded as passed without mail.

No mail for certificates that are revoked (a renewal supersedes the old one) or
already replaced by a newer issued certificate of the same location that expires
later. The recipient comes from registration through ``lookup`` (issuance never
imports registration, DESIGN.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.models import CertificateRecord, CertificateStatus
from issuance.mail import enqueue_mail
from issuance.models import ExpiryNotice

#: Days before notAfter at which a notice is sent.
EXPIRY_NOTICE_DAYS: Final[tuple[int, ...]] = (30, 14, 7, 1)
EXPIRY_TEMPLATE: Final = "expiry_notice"


@dataclass(frozen=True, slots=True)
class Contact:
    """Where and how to tell the applicant.

    Attributes:
        recipient: email address.
        language: ``en``, ``zh-Hant`` or ``zh-Hans`` (``issuance.mail.LANGUAGES``).
        context: template variables besides the certificate's (``provider_name``,
            ``reference``, ``location_number``, ``location_name``).
    """

    recipient: str
    language: str
    context: dict[str, Any] = field(default_factory=dict)


ContactLookup = Callable[[Session, CertificateRecord], Contact | None]


def _superseded(session: Session, record: CertificateRecord) -> bool:
    newer = session.scalars(
        select(CertificateRecord.id)
        .where(
            CertificateRecord.service_location_id == record.service_location_id,
            CertificateRecord.status == CertificateStatus.ISSUED,
            CertificateRecord.profile == record.profile,
            CertificateRecord.id != record.id,
            CertificateRecord.not_valid_after > record.not_valid_after,
        )
        .limit(1)
    ).first()
    return newer is not None


def due_thresholds(
    not_valid_after: dt.datetime, now: dt.datetime, thresholds: tuple[int, ...]
) -> list[int]:
    """Thresholds (days) already reached at ``now`` for a certificate ending at
    ``not_valid_after``: ``not_valid_after - now <= days``; none once it has expired."""
    left = not_valid_after - now
    if left < dt.timedelta(0):
        return []
    return sorted(d for d in thresholds if left <= dt.timedelta(days=d))


def queue_expiry_notices(
    session: Session,
    *,
    now: dt.datetime,
    lookup: ContactLookup,
    base_url: str,
    thresholds: tuple[int, ...] = EXPIRY_NOTICE_DAYS,
) -> int:
    """Queue the notices due at ``now`` (commits one transaction per certificate).

    Args:
        lookup: the applicant to tell about a certificate (``None``: record the
            notice without mail, e.g. for a location that no longer exists).
        base_url: public base URL, for the renewal instructions.

    Returns:
        The number of mails queued.
    """
    horizon = now + dt.timedelta(days=max(thresholds))
    candidates = session.scalars(
        select(CertificateRecord)
        .where(
            CertificateRecord.status == CertificateStatus.ISSUED,
            CertificateRecord.service_location_id.is_not(None),
            CertificateRecord.not_valid_after >= now,
            CertificateRecord.not_valid_after <= horizon,
        )
        .order_by(CertificateRecord.id)
    ).all()
    queued = 0
    for record in candidates:
        due = due_thresholds(record.not_valid_after, now, thresholds)
        sent = set(
            session.scalars(
                select(ExpiryNotice.days_before).where(ExpiryNotice.certificate_id == record.id)
            )
        )
        new = [d for d in due if d not in sent]
        if not new:
            continue
        contact = None if _superseded(session, record) else lookup(session, record)
        mail_id = None
        if contact is not None:
            mail = enqueue_mail(
                session,
                recipient=contact.recipient,
                template=EXPIRY_TEMPLATE,
                language=contact.language,
                context={
                    **contact.context,
                    "days": new[0],
                    "serial_number": record.serial_number,
                    "not_after": record.not_valid_after.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    "base_url": base_url,
                },
                now=now,
            )
            session.flush()
            mail_id = mail.id
        for days in new:
            session.add(
                ExpiryNotice(
                    certificate_id=record.id,
                    days_before=days,
                    queued_at=now,
                    mail_id=mail_id if days == new[0] else None,
                )
            )
        try:
            session.commit()
        except IntegrityError:  # another worker queued it first
            session.rollback()
            continue
        queued += mail_id is not None
    return queued
