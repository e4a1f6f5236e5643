"""Download codes: one single-use code per service location, sent in the
login-instructions email, stored only as SHA-256, expiring after 60 days (setting).

A code is 20 characters of Crockford base32 (100 random bits), shown in groups of
four (``ABCD-EFGH-...``); dashes, spaces and case are ignored when it is typed back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from issuance.errors import DownloadCodeExpired, DownloadCodeInvalid, DownloadCodeUsed
from issuance.models import DownloadCode

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 20


def generate_download_code() -> str:
    """A fresh code such as ``7K3Q-9M2T-...`` (5 groups of 4)."""
    raw = "".join(secrets.choice(CROCKFORD) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def normalise_download_code(code: str) -> str:
    """Upper-case, drop dashes and spaces, map the look-alikes I, L → 1 and O → 0."""
    cleaned = code.strip().upper().replace("-", "").replace(" ", "")
    return cleaned.translate(str.maketrans("ILO", "110"))


def hash_download_code(code: str) -> str:
    """SHA-256 hex of the normalised code."""
    return hashlib.sha256(normalise_download_code(code).encode("ascii", "replace")).hexdigest()


def create_download_code(
    session: Session,
    service_location_id: int,
    *,
    now: dt.datetime,
    validity: dt.timedelta,
    replaces_certificate_id: int | None = None,
    replacement_reason: str | None = None,
    requested_by: str | None = None,
) -> str:
    """Store a new code for ``service_location_id`` and return it in clear (only here).

    The caller commits (with the decision that created it).

    Args:
        replaces_certificate_id / replacement_reason / requested_by: for a replacement
            code (lost key, ``issuance.service.issue_replacement_code``): the certificate
            that collecting with the code revokes, the RFC 5280 reason, the officer.
    """
    code = generate_download_code()
    session.add(
        DownloadCode(
            service_location_id=service_location_id,
            code_sha256=hash_download_code(code),
            created_at=now,
            expires_at=now + validity,
            replaces_certificate_id=replaces_certificate_id,
            replacement_reason=replacement_reason,
            requested_by=requested_by,
        )
    )
    return code


def claim_download_code(
    session: Session, service_location_id: int, code: str, *, now: dt.datetime
) -> DownloadCode:
    """Mark the stored code matching ``code`` as used (``used_at = now``) and return it.

    The claim is a conditional ``UPDATE ... WHERE used_at IS NULL`` so two concurrent
    collections cannot both succeed; it is staged in the session and becomes durable
    with the caller's next commit (issuance commits it together with the reserved
    certificate row), and a rollback gives the code back.

    Raises:
        DownloadCodeInvalid: unknown, or issued for another service location.
        DownloadCodeUsed: used already (also when a concurrent request won the race).
        DownloadCodeExpired: past ``expires_at``.
    """
    row = session.scalars(
        select(DownloadCode).where(DownloadCode.code_sha256 == hash_download_code(code))
    ).first()
    if row is None or row.service_location_id != service_location_id:
        raise DownloadCodeInvalid("download code is not valid for this service location")
    if row.used_at is not None:
        raise DownloadCodeUsed("download code has been used already")
    if now >= row.expires_at:
        raise DownloadCodeExpired("download code has expired; ask for a new one")
    result = session.execute(
        update(DownloadCode)
        .where(DownloadCode.id == row.id, DownloadCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise DownloadCodeUsed("download code has been used already")
    session.expire(row)
    return row
