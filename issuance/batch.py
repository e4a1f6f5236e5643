"""Group commit for CSR collections: pipeline steps 5-7 (reserve, sign, store) of many
collections in two transactions.

:func:`reserve_sign_store` takes collections that passed the checks and the linter
(``ca.service.prepare_certificate``) and, in one session:

1. in :func:`lock_order` (scoped idempotency key, then the normalised code's SHA-256,
   so two batches take row locks in the same order): claim every distinct download
   code with one conditional ``UPDATE ... WHERE used_at IS NULL AND expires_at > now
   RETURNING`` (``issuance.codes.claim_download_codes``); a collection whose code that
   did not claim is claimed alone (``issuance.service.claim_download_code``), which
   raises its error (used, expired, invalid, or a code repeated in the batch). Then
   ``INSERT`` the claimed collections' ``reserved`` rows in one executemany ``ON
   CONFLICT DO NOTHING RETURNING id, serial_number`` (a taken idempotency key or serial
   is that collection's error and gives its code back) and link the codes to their
   rows (one executemany): three statements for a batch that all succeeds, however
   many collections it has;
2. **commit**: every reservation is durable, with its claimed code, before any real
   signature (record-before-sign, Boulder);
3. sign each with the issuer's key and check the signed TBS is the recorded one;
4. store all with one executemany of ``ca.service.STORE_SIGNED`` (``reserved →
   issued``, a revocation that came first stays) and append their
   ``certificate.issued`` events under one head lock (``ca.audit.record_events``);
5. **commit**; only then does any response leave.

A crash between 2 and 5 leaves ``reserved`` rows that ``ca.service.stale_reservations``
finds, as for a single collection. In :func:`reserve_sign_store` a database error
aborts the whole batch (nothing of it is committed past the last commit).
:func:`collect_batch` (the API's entry point) runs it with bounded retries of a
transaction that a concurrent one made fail (deadlock, serialization failure, SQLite
lock timeout): the batch again, then each collection alone, then
:class:`DatabaseBusy` (503 with ``Retry-After``) with nothing of it kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Insert, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ca import service as ca_service
from ca.audit import PendingEvent, record_events
from ca.errors import ErrorCategory
from ca.models import CertificateRecord, CertificateStatus
from ca.serials import serial_to_hex
from ca.service import (
    STORE_SIGNED,
    CAError,
    IdempotencyKeyTaken,
    PreparedCertificate,
    Signer,
)
from db.session import is_transaction_conflict
from issuance import codes as issuance_codes
from issuance import service as issuance_service
from issuance.codes import LINK_CERTIFICATE, ClaimedCode, hash_download_code
from issuance.errors import DownloadCodeExpired, DownloadCodeInvalid, DownloadCodeUsed
from issuance.models import DownloadCode
from issuance.service import CLIENT_PROFILE, ApprovedLocation, Supersession

log = logging.getLogger("ehrca.issuance")
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
    """``INSERT`` reserved rows ``ON CONFLICT DO NOTHING RETURNING id, serial_number``
    (built once per dialect: both SQLite 3.35+ and PostgreSQL have the clause; with
    many parameter sets SQLAlchemy sends them as multi-row ``INSERT``s,
    "insertmanyvalues"). A conflicting row (idempotency key or serial taken) returns
    nothing; rows come back in no set order, hence the serial."""
    statement = _INSERTS.get(dialect)
    if statement is None:
        module = postgresql if dialect == "postgresql" else sqlite
        statement = _INSERTS[dialect] = (
            module.insert(_certificates)
            .on_conflict_do_nothing()
            .returning(_certificates.c.id, _certificates.c.serial_number)
        )
    return statement


_INSERTS: dict[str, Insert] = {}
_GIVE_BACK = update(_codes).where(_codes.c.id == bindparam("b_id")).values(used_at=None)
_BY_KEY = select(_certificates.c.id).where(_certificates.c.idempotency_key == bindparam("b_key"))
_SERIAL = select(_certificates.c.serial_number).where(_certificates.c.id == bindparam("b_id"))


def _reserved_values(signer: Signer, item: PendingCollection) -> dict[str, object]:
    """The ``reserved`` row of ``item`` (parameters of :func:`_insert_reserved`)."""
    draft = item.prepared.draft
    return {
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


def lock_order(items: list[PendingCollection], indexes: list[int]) -> list[int]:
    """``indexes`` in the order a batch takes row locks: by scoped idempotency key (the
    unique index the reserved rows' ``INSERT`` locks), then by the code's SHA-256
    (``issuance.codes.hash_download_code``, the code as normalised: ``-ABCD-...`` and
    ``abcd...`` are one code and sort together), so any two batches take locks in the
    same order and do not deadlock each other."""
    return sorted(
        indexes,
        key=lambda i: (items[i].scoped_key or "", hash_download_code(items[i].download_code)),
    )


def _claim_all(
    session: Session,
    items: list[PendingCollection],
    order: list[int],
    results: list[StoredCertificate | Exception | None],
) -> dict[int, ClaimedCode]:
    """Claim the codes of ``items[i]``, ``i`` in ``order``: every distinct code in one
    statement (``issuance.codes.claim_download_codes``); a collection whose code that
    did not claim (unknown, used, expired, another location's, or a code repeated in
    the batch) is claimed alone, in ``order``, by
    ``issuance.service.claim_download_code``, whose error becomes its result."""
    first: dict[str, int] = {}
    for index in order:
        first.setdefault(hash_download_code(items[index].download_code), index)
    claimed: dict[int, ClaimedCode] = {}
    if first:
        got = issuance_codes.claim_download_codes(
            session,
            [
                (digest, items[i].location.service_location_id, items[i].now)
                for digest, i in first.items()
            ],
        )
        for digest, index in first.items():
            code = got.get(digest)
            if code is not None:
                claimed[index] = code
    for index in order:
        if index in claimed:
            continue
        item = items[index]
        try:
            # Through issuance.service, the module the single-collection path uses too.
            claimed[index] = issuance_service.claim_download_code(
                session, item.location.service_location_id, item.download_code, now=item.now
            )
        except (DownloadCodeInvalid, DownloadCodeUsed, DownloadCodeExpired) as exc:
            results[index] = exc
    return claimed


def _supersedes(session: Session, claimed: ClaimedCode) -> tuple[Supersession, ...]:
    """What collecting with a replacement code replaces (``()`` for a first code)."""
    if claimed.replaces_certificate_id is None:
        return ()
    old_serial = (
        session.connection()
        .execute(_SERIAL, {"b_id": claimed.replaces_certificate_id})
        .scalar_one_or_none()
    )
    if old_serial is None:
        return ()
    return (
        Supersession(old_serial, claimed.replacement_reason or "superseded", claimed.requested_by),
    )


#: A reservation: (item index, certificate row id, download code row id, supersedes,
#: subject DN as RFC 4514 text: the signed certificate's, whose TBS is the recorded one).
_Reserved = tuple[int, int, int, tuple[Supersession, ...], str]


def _reserve_all(
    session: Session,
    signer: Signer,
    items: list[PendingCollection],
    indexes: list[int],
    results: list[StoredCertificate | Exception | None],
) -> list[_Reserved]:
    """Steps 1-2 for ``items[i]``, ``i`` in ``indexes``, in :func:`lock_order`: claim
    the codes (:func:`_claim_all`), insert the reserved rows of the claimed ones (one
    executemany), give back the codes of those whose row conflicted (idempotency key
    or serial taken: that collection's error), link the codes, **commit**. Per-item
    refusals go into ``results``; returns a :data:`_Reserved` for each reservation. A
    database error propagates with the transaction rolled back (nothing of it kept).
    Statements: three for any number of collections that all succeed."""
    order = lock_order(items, indexes)
    reserved: list[_Reserved] = []
    try:
        claimed = _claim_all(session, items, order, results)
        inserting = [index for index in order if index in claimed]
        if inserting:
            connection = session.connection()
            rows = [_reserved_values(signer, items[index]) for index in inserting]
            ids = {
                serial: record_id
                for record_id, serial in connection.execute(
                    _insert_reserved(connection.dialect.name), rows
                )
            }
            given_back: list[dict[str, object]] = []
            links: list[dict[str, object]] = []
            for index, row in zip(inserting, rows, strict=True):
                code = claimed[index]
                record_id = ids.get(cast(str, row["serial_number"]))
                if record_id is None:
                    given_back.append({"b_id": code.id})
                    continue
                reserved.append(
                    (
                        index,
                        record_id,
                        code.id,
                        _supersedes(session, code),
                        cast(str, row["subject"]),
                    )
                )
                links.append({"b_id": code.id, "b_certificate": record_id})
            if given_back:
                # Give these collections' codes back; the rest of the batch goes on.
                connection.execute(_GIVE_BACK, given_back)
                done = {entry[0] for entry in reserved}
                for index in inserting:
                    if index in done:
                        continue
                    key = items[index].scoped_key
                    if key is not None and connection.execute(_BY_KEY, {"b_key": key}).first():
                        results[index] = IdempotencyKeyTaken(
                            "a certificate with this idempotency key is reserved or issued already"
                        )
                    else:
                        results[index] = CAError(
                            "could not reserve the serial number (duplicate serial); try again",
                            code="serial_reservation_failed",
                        )
            if links:
                connection.execute(LINK_CERTIFICATE, links)
        session.commit()  # record before sign: reservations and claims are durable
    except BaseException:
        session.rollback()
        raise
    return reserved


_Stored = tuple[list[dict[str, object]], list[PendingEvent]]


def _sign_all(
    signer: Signer,
    items: list[PendingCollection],
    reserved: list[_Reserved],
    results: list[StoredCertificate | Exception | None],
) -> _Stored:
    """Step 3: sign each reservation; returns the parameters of step 4 (store rows and
    audit events). Results are set here; a signature whose TBS differs from the recorded
    one is ``signed_certificate_mismatch`` (its row stays reserved, revocable)."""
    stored: list[dict[str, object]] = []
    events: list[PendingEvent] = []
    for index, record_id, _code_id, supersedes, subject_dn in reserved:
        item = items[index]
        # Through ca.service, the pipeline's named step (tests make it fail there).
        certificate = ca_service.sign_reserved_certificate(item.prepared.builder, signer.key)
        if certificate.tbs_certificate_bytes != item.prepared.draft.tbs_certificate_bytes:
            results[index] = CAError(
                "signed certificate differs from the recorded to-be-signed certificate",
                code="signed_certificate_mismatch",
            )
            continue
        serial = serial_to_hex(certificate.serial_number)
        stored.append(
            {"b_id": record_id, "b_der": certificate.public_bytes(_DER), "b_issued_at": item.now}
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
                    "subject_dn": subject_dn,
                },
            )
        )
        results[index] = StoredCertificate(record_id, serial, certificate, supersedes)
    return stored, events


def _store_all(
    session: Session, stored: list[dict[str, object]], events: list[PendingEvent]
) -> None:
    """Steps 4-5: store the signed rows, append their audit events, **commit** (rolled
    back on any error)."""
    try:
        if stored:
            session.connection().execute(STORE_SIGNED, stored)
            record_events(session, events)
        session.commit()
    except BaseException:
        session.rollback()
        raise


def reserve_sign_store(
    session: Session, signer: Signer, items: list[PendingCollection]
) -> list[StoredCertificate | Exception]:
    """Reserve, sign and store ``items`` with two commits (see the module docstring), one
    attempt, no retry (:func:`collect_batch` retries).

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
    reserved = _reserve_all(session, signer, items, list(range(len(items))), results)
    stored, events = _sign_all(signer, items, reserved, results)
    _store_all(session, stored, events)
    return [r if r is not None else RuntimeError("not processed") for r in results]


class DatabaseBusy(CAError):
    """The database kept aborting this collection's transaction because of concurrent
    ones (deadlock or serialization failure, SQLite lock timeout) after the retries of
    :func:`collect_batch`; nothing of the collection is kept (its download code is
    unused). HTTP 503 with ``Retry-After`` (RFC 9110 section 10.2.3): try again."""

    code = "database_busy"
    category = ErrorCategory.UNAVAILABLE


#: Attempts of a whole batch's reservation transaction, then of each collection alone.
BATCH_ATTEMPTS = 3
ALONE_ATTEMPTS = 3
#: Attempts of the store transaction (step 4-5) before the reservations are released.
STORE_ATTEMPTS = 5
#: Seconds a client is told to wait (``Retry-After``) after :class:`DatabaseBusy`.
RETRY_AFTER_S = 1


def _busy() -> DatabaseBusy:
    return DatabaseBusy(
        "the database is busy with concurrent issuance; try again",
        retry_after=RETRY_AFTER_S,
    )


_JITTER = random.SystemRandom()


def _backoff(attempt: int) -> None:
    """Sleep a jittered 2-10 ms times ``attempt`` (1-based) so racing batches part."""
    time.sleep(_JITTER.uniform(0.002, 0.010) * attempt)


def _reserve_retrying(
    sessions: Callable[[], Session],
    signer: Signer,
    items: list[PendingCollection],
    indexes: list[int],
    results: list[StoredCertificate | Exception | None],
    attempts: int,
) -> list[_Reserved] | None:
    """:func:`_reserve_all` up to ``attempts`` times while it fails with a transaction
    conflict (``db.session.is_transaction_conflict``); ``None`` if every attempt did."""
    for attempt in range(1, attempts + 1):
        scratch: list[StoredCertificate | Exception | None] = [None] * len(items)
        try:
            with sessions() as session:
                reserved = _reserve_all(session, signer, items, indexes, scratch)
        except DBAPIError as exc:
            if not is_transaction_conflict(exc):
                raise
            log.warning(
                "issuance batch of %d: transaction conflict (attempt %d)", len(indexes), attempt
            )
            if attempt < attempts:
                _backoff(attempt)
            continue
        for index in indexes:
            results[index] = scratch[index]
        return reserved
    return None


def _release(sessions: Callable[[], Session], reserved: list[tuple[int, int]]) -> None:
    """Undo what a reservation held that a client could want again, after its store
    failed for good: the download code is unused again and the row's idempotency key
    is freed. The row itself stays ``reserved`` (``ca.service.stale_reservations``: it
    was signed, never sent, and a security officer revokes it)."""
    with sessions() as session:
        try:
            connection = session.connection()
            connection.execute(
                _RELEASE_CODE,
                [{"b_id": code_id, "b_certificate": rid} for rid, code_id in reserved],
            )
            connection.execute(_RELEASE_KEY, [{"b_id": rid} for rid, _ in reserved])
            session.commit()
        except BaseException:
            session.rollback()
            raise


_RELEASE_CODE = (
    update(_codes)
    .where(_codes.c.id == bindparam("b_id"), _codes.c.certificate_id == bindparam("b_certificate"))
    .values(used_at=None, certificate_id=None)
)
_RELEASE_KEY = (
    update(_certificates)
    .where(
        _certificates.c.id == bindparam("b_id"),
        _certificates.c.status == CertificateStatus.RESERVED,
    )
    .values(idempotency_key=None)
)


def collect_batch(
    sessions: Callable[[], Session], signer: Signer, items: list[PendingCollection]
) -> list[StoredCertificate | Exception]:
    """:func:`reserve_sign_store` that survives transaction conflicts (PostgreSQL
    deadlocks and serialization failures, SQLite lock timeouts:
    ``db.session.is_transaction_conflict``), each attempt in a fresh session:

    1. the reservation transaction of the whole batch, up to :data:`BATCH_ATTEMPTS`
       times (a conflict rolls it back whole: no claim or row is kept);
    2. if it still conflicts, each collection alone, up to :data:`ALONE_ATTEMPTS` times;
       one that never gets through is :class:`DatabaseBusy` (nothing of it kept);
    3. sign what was reserved; the store transaction up to :data:`STORE_ATTEMPTS`
       times. If it never gets through, the reservations are released
       (:func:`_release`: codes unused again, idempotency keys freed, rows left
       ``reserved`` for ``ca.service.stale_reservations``) and those collections are
       :class:`DatabaseBusy`; if even that fails, the rows and claims stay as after a
       crash between reserve and store.

    Returns:
        As :func:`reserve_sign_store`, plus :class:`DatabaseBusy` per collection.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: a database error that is not a transaction
            conflict (nothing of the failed transaction is kept).
    """
    results: list[StoredCertificate | Exception | None] = [None] * len(items)
    everything = list(range(len(items)))
    reserved = _reserve_retrying(sessions, signer, items, everything, results, BATCH_ATTEMPTS)
    if reserved is None:
        reserved = []
        for index in everything:
            alone = _reserve_retrying(sessions, signer, items, [index], results, ALONE_ATTEMPTS)
            if alone is None:
                results[index] = _busy()
            else:
                reserved.extend(alone)
    stored, events = _sign_all(signer, items, reserved, results)
    if stored:
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                with sessions() as session:
                    _store_all(session, stored, events)
                break
            except DBAPIError as exc:
                if not is_transaction_conflict(exc):
                    raise
                log.warning(
                    "issuance store of %d: transaction conflict (attempt %d)", len(stored), attempt
                )
                if attempt < STORE_ATTEMPTS:
                    _backoff(attempt)
        else:
            ids = {cast(int, row["b_id"]) for row in stored}
            held = [(entry[1], entry[2]) for entry in reserved if entry[1] in ids]
            for entry in reserved:
                if entry[1] in ids:
                    results[entry[0]] = _busy()
            try:
                _release(sessions, held)
            except DBAPIError:
                log.exception("could not release %d reservations after a failed store", len(held))
    return [r if r is not None else RuntimeError("not processed") for r in results]
