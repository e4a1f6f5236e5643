"""Download codes: one single-use code per service location, sent in the
login-instructions email, stored only as SHA-256, expiring after 60 days (setting).

A code is 20 characters of Crockford base32 (100 random bits), shown in groups of
four (``ABCD-EFGH-...``); dashes, spaces and case are ignored when it is typed back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, Update, and_, bindparam, case, or_, select, update
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


@dataclass(frozen=True, slots=True)
class ClaimedCode:
    """A download code just claimed: its row id and, for a replacement code, what
    collecting with it replaces (certificate id, RFC 5280 reason, security officer)."""

    id: int
    replaces_certificate_id: int | None
    replacement_reason: str | None
    requested_by: str | None


_codes = cast(Table, DownloadCode.__table__)
#: The claim (parameters ``b_hash``, ``b_location``, ``b_now``), built once.
_CLAIM = (
    update(_codes)
    .where(
        _codes.c.code_sha256 == bindparam("b_hash"),
        _codes.c.service_location_id == bindparam("b_location"),
        _codes.c.used_at.is_(None),
        _codes.c.expires_at > bindparam("b_now"),
    )
    .values(used_at=bindparam("b_now"))
    .returning(
        _codes.c.id,
        _codes.c.replaces_certificate_id,
        _codes.c.replacement_reason,
        _codes.c.requested_by,
    )
)
_WHY_NOT = select(_codes.c.service_location_id, _codes.c.used_at).where(
    _codes.c.code_sha256 == bindparam("b_hash")
)
#: Links claimed codes to their certificates (``b_id``, ``b_certificate``); executemany.
LINK_CERTIFICATE = (
    update(_codes)
    .where(_codes.c.id == bindparam("b_id"))
    .values(certificate_id=bindparam("b_certificate"))
)


def claim_download_code(
    session: Session, service_location_id: int, code: str, *, now: dt.datetime
) -> ClaimedCode:
    """Mark the stored code matching ``code`` as used (``used_at = now``).

    The claim is one conditional ``UPDATE ... WHERE used_at IS NULL AND expires_at > now
    RETURNING`` so two concurrent collections cannot both succeed (the loser's UPDATE
    waits for the winner's commit and matches nothing); only when it matches nothing is
    the code read again, to say why. It is staged in the session's transaction and
    becomes durable with the caller's next commit (issuance commits it together with
    the reserved certificate row, and links it with :data:`LINK_CERTIFICATE`); a
    rollback gives the code back.

    Raises:
        DownloadCodeInvalid: unknown, or issued for another service location.
        DownloadCodeUsed: used already (also when a concurrent request won the race).
        DownloadCodeExpired: past ``expires_at``.
    """
    digest = hash_download_code(code)
    connection = session.connection()
    row = connection.execute(
        _CLAIM, {"b_hash": digest, "b_location": service_location_id, "b_now": now}
    ).first()
    if row is not None:
        return ClaimedCode(row[0], row[1], row[2], row[3])
    # Nothing matched: say why (read in the same transaction, after the claim attempt).
    found = connection.execute(_WHY_NOT, {"b_hash": digest}).first()
    if found is None or found[0] != service_location_id:
        raise DownloadCodeInvalid("download code is not valid for this service location")
    if found[1] is not None:
        raise DownloadCodeUsed("download code has been used already")
    raise DownloadCodeExpired("download code has expired; ask for a new one")


def _claim_many(count: int) -> Update:
    """The claim of ``count`` distinct codes in one statement (parameters ``h{i}``,
    ``l{i}``, ``n{i}``), built once per ``count`` so SQLAlchemy's compiled cache holds
    one entry per batch size."""
    statement = _CLAIMS.get(count)
    if statement is None:
        c = _codes.c
        when = c.used_at.type
        terms = [
            (bindparam(f"h{i}", type_=c.code_sha256.type), bindparam(f"n{i}", type_=when))
            for i in range(count)
        ]
        statement = _CLAIMS[count] = (
            update(_codes)
            .where(
                c.used_at.is_(None),
                c.code_sha256.in_([digest for digest, _ in terms]),
                or_(
                    *(
                        and_(
                            c.code_sha256 == digest,
                            c.service_location_id == bindparam(f"l{i}"),
                            c.expires_at > now,
                        )
                        for i, (digest, now) in enumerate(terms)
                    )
                ),
            )
            .values(used_at=case(*((c.code_sha256 == digest, now) for digest, now in terms)))
            .returning(
                c.code_sha256,
                c.id,
                c.replaces_certificate_id,
                c.replacement_reason,
                c.requested_by,
            )
        )
    return statement


_CLAIMS: dict[int, Update] = {}


def claim_download_codes(
    session: Session, claims: Sequence[tuple[str, int, dt.datetime]]
) -> dict[str, ClaimedCode]:
    """Claim many codes at once: for each ``(code SHA-256 hex, service location id,
    now)`` with distinct hashes, what :func:`claim_download_code` does on success
    (``used_at = now`` where the code is unused, unexpired at ``now`` and issued for
    that location), in one conditional ``UPDATE ... RETURNING`` (group commit,
    ``issuance.batch``).

    Returns:
        The claimed codes by hash. A hash missing from it was not claimed (unknown,
        another location's, used, expired): nothing of it changed, and
        :func:`claim_download_code` with the typed code says why (raises).

    Raises:
        ValueError: two claims with the same hash (the caller claims a repeated code
            one at a time, in its order).
    """
    params: dict[str, object] = {}
    for i, (digest, location, now) in enumerate(claims):
        params[f"h{i}"] = digest
        params[f"l{i}"] = location
        params[f"n{i}"] = now
    if len({digest for digest, _, _ in claims}) != len(claims):
        raise ValueError("claim_download_codes takes distinct codes")
    if not claims:
        return {}
    rows = session.connection().execute(_claim_many(len(claims)), params)
    return {row[0]: ClaimedCode(row[1], row[2], row[3], row[4]) for row in rows}
