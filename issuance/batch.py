"""Group commit for CSR collections: pipeline steps 5-7 (reserve, sign, store) of many
collections in two transactions.

:func:`reserve_sign_store` takes collections that passed the checks and the linter
(``ca.service.prepare_certificate``) and, in one session:

1. for each (in a fixed order: idempotency key, then code, so two batches take row
   locks in the same order): claim the download code with one conditional
   ``UPDATE ... WHERE used_at IS NULL AND expires_at > now RETURNING``
   (``issuance.codes.claim_download_code``), then ``INSERT`` the ``reserved`` row ``ON
   CONFLICT DO NOTHING RETURNING id`` (a taken idempotency key or serial is that
   collection's error and gives its code back); link the codes to their rows (one
   executemany);
2. **commit**: every reservation is durable, with its claimed code, before any real
   signature (record-before-sign, Boulder);
3. sign each with the issuer's key and check the signed TBS is the recorded one;
4. store all with one executemany of ``ca.service.STORE_SIGNED`` (``reserved →
   issued``, a revocation that came first stays) and append their
   ``certificate.issued`` events under one head lock (``ca.audit.record_events``);
5. **commit**; only then does any response leave.

A crash between 2 and 5 leaves ``reserved`` rows that ``ca.service.stale_reservations``
finds, as for a single collection. A database error aborts the whole batch (every
collection in it gets the error; nothing of it is committed past the last commit).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Insert, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ca import service as ca_service
from ca.audit import PendingEvent, record_events
from ca.models import CertificateRecord, CertificateStatus
from ca.serials import serial_to_hex
from ca.service import (
    STORE_SIGNED,
    CAError,
    IdempotencyKeyTaken,
    PreparedCertificate,
    Signer,
)
from issuance import service as issuance_service
from issuance.codes import LINK_CERTIFICATE
from issuance.errors import DownloadCodeExpired, DownloadCodeInvalid, DownloadCodeUsed
from issuance.models import DownloadCode
from issuance.service import CLIENT_PROFILE, ApprovedLocation, Supersession

_certificates = cast(Table, CertificateRecord.__table__)
_codes = cast(Table, DownloadCode.__table__)
_DER = Encoding.DER


@dataclass(frozen=True, slots=True)
class PendingCollection:
    """One checked and linted CSR collection waiting for its reservation.

    Attributes:
        download_code: as typed (claimed by ``issuance.codes.claim_download_code``).
        scoped_key: the scoped ``Idempotency-Key`` (``issuance.service``), or ``None``.
    """

    location: ApprovedLocation
    download_code: str
    scoped_key: str | None
    prepared: PreparedCertificate
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    """A collection's committed, issued certificate.

    Attributes:
        supersedes: what a replacement code replaces (``api/`` revokes it).
    """

    record_id: int
    serial_number: str
    certificate: x509.Certificate
    supersedes: tuple[Supersession, ...]


def _insert_reserved(dialect: str) -> Insert:
    """``INSERT`` a reserved row ``ON CONFLICT DO NOTHING RETURNING id`` (built once per
    dialect: both SQLite 3.35+ and PostgreSQL have the clause)."""
    statement = _INSERTS.get(dialect)
    if statement is None:
        module = postgresql if dialect == "postgresql" else sqlite
        statement = _INSERTS[dialect] = (
            module.insert(_certificates).on_conflict_do_nothing().returning(_certificates.c.id)
        )
    return statement


_INSERTS: dict[str, Insert] = {}
_GIVE_BACK = update(_codes).where(_codes.c.id == bindparam("b_id")).values(used_at=None)
_BY_KEY = select(_certificates.c.id).where(_certificates.c.idempotency_key == bindparam("b_key"))
_SERIAL = select(_certificates.c.serial_number).where(_certificates.c.id == bindparam("b_id"))


def _reserve(
    session: Session, signer: Signer, item: PendingCollection
) -> tuple[int, int, tuple[Supersession, ...]] | Exception:
    """Claim ``item``'s code and insert its reserved row: ``(record id, code id,
    supersedes)``, or that item's error (its changes undone)."""
    try:
        # Through issuance.service, the module the single-collection path uses too.
        claimed = issuance_service.claim_download_code(
            session, item.location.service_location_id, item.download_code, now=item.now
        )
    except (DownloadCodeInvalid, DownloadCodeUsed, DownloadCodeExpired) as exc:
        return exc
    connection = session.connection()
    draft = item.prepared.draft
    values = {
        "issuer_id": signer.authority.id,
        "serial_number": serial_to_hex(draft.serial_number),
        "status": CertificateStatus.RESERVED,
        "profile": CLIENT_PROFILE,
        "subject": draft.subject.rfc4514_string(),
        "tbs_certificate_der": draft.tbs_certificate_bytes,
        "not_valid_before": draft.not_valid_before_utc,
        "not_valid_after": draft.not_valid_after_utc,
        "provider_reference": item.location.provider_reference,
        "service_location_id": item.location.service_location_id,
        "key_generated_by_ca": False,
        "idempotency_key": item.scoped_key,
        "created_at": item.now,
        "issued_at": None,
        "certificate_der": None,
        "crl_shard": item.prepared.crl_shard,
    }
    record_id = connection.execute(
        _insert_reserved(connection.dialect.name), values
    ).scalar_one_or_none()
    if record_id is None:
        # Give this collection's code back; the rest of the batch goes on.
        connection.execute(_GIVE_BACK, {"b_id": claimed.id})
        if (
            item.scoped_key is not None
            and connection.execute(_BY_KEY, {"b_key": item.scoped_key}).first()
        ):
            return IdempotencyKeyTaken(
                "a certificate with this idempotency key is reserved or issued already"
            )
        return CAError(
            "could not reserve the serial number (duplicate serial); try again",
            code="serial_reservation_failed",
        )
    supersedes: tuple[Supersession, ...] = ()
    if claimed.replaces_certificate_id is not None:
        old_serial = connection.execute(
            _SERIAL, {"b_id": claimed.replaces_certificate_id}
        ).scalar_one_or_none()
        if old_serial is not None:
            supersedes = (
                Supersession(
                    old_serial, claimed.replacement_reason or "superseded", claimed.requested_by
                ),
            )
    return record_id, claimed.id, supersedes


def reserve_sign_store(
    session: Session, signer: Signer, items: list[PendingCollection]
) -> list[StoredCertificate | Exception]:
    """Reserve, sign and store ``items`` with two commits (see the module docstring).

    Returns:
        One entry per item, in order: its :class:`StoredCertificate`, or the error for
        that item alone (``DownloadCodeInvalid``, ``DownloadCodeUsed``,
        ``DownloadCodeExpired``, ``IdempotencyKeyTaken``, ``CAError``
        ``serial_reservation_failed`` or ``signed_certificate_mismatch``).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: a database failure; the session is rolled back
            and no item is issued.
    """
    results: list[StoredCertificate | Exception | None] = [None] * len(items)
    order = sorted(
        range(len(items)), key=lambda i: (items[i].scoped_key or "", items[i].download_code)
    )
    reserved: list[tuple[int, int, tuple[Supersession, ...]]] = []
    links: list[dict[str, object]] = []
    try:
        for index in order:
            outcome = _reserve(session, signer, items[index])
            if isinstance(outcome, Exception):
                results[index] = outcome
            else:
                record_id, code_id, supersedes = outcome
                reserved.append((index, record_id, supersedes))
                links.append({"b_id": code_id, "b_certificate": record_id})
        if links:
            session.connection().execute(LINK_CERTIFICATE, links)
        session.commit()  # record before sign: reservations and claims are durable
        stored: list[dict[str, object]] = []
        events: list[PendingEvent] = []
        for index, record_id, supersedes in reserved:
            item = items[index]
            # Through ca.service, the pipeline's named step (tests make it fail there).
            certificate = ca_service.sign_reserved_certificate(item.prepared.builder, signer.key)
            if certificate.tbs_certificate_bytes != item.prepared.draft.tbs_certificate_bytes:
                # The row stays reserved (revocable), as in ca.service.
                results[index] = CAError(
                    "signed certificate differs from the recorded to-be-signed certificate",
                    code="signed_certificate_mismatch",
                )
                continue
            serial = serial_to_hex(certificate.serial_number)
            stored.append(
                {
                    "b_id": record_id,
                    "b_der": certificate.public_bytes(_DER),
                    "b_issued_at": item.now,
                }
            )
            events.append(
                PendingEvent(
                    "certificate.issued",
                    actor=item.location.provider_reference,
                    now=item.now,
                    subject=serial,
                    details={
                        "profile": CLIENT_PROFILE,
                        "service_location": item.location.number,
                        "key_generated_by_ca": False,
                        "subject_dn": certificate.subject.rfc4514_string(),
                    },
                )
            )
            results[index] = StoredCertificate(record_id, serial, certificate, supersedes)
        if stored:
            session.connection().execute(STORE_SIGNED, stored)
            record_events(session, events)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return [r if r is not None else RuntimeError("not processed") for r in results]
