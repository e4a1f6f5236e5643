"""The OCSP responder over the database and the key store (RFC 6960; pure parts in
:mod:`revocation.ocsp`).

Delegated responder certificates
    Each issuing CA answers through a delegated responder (RFC 6960 4.2.2.2): an end
    entity certificate it issues with extendedKeyUsage id-kp-OCSPSigning and
    id-pkix-ocsp-nocheck (profile ``ocsp_responder``), short-lived (the
    ``ocsp_responder_validity`` of :class:`ca.config.CAConfig`, 7 days by default), with
    a fresh EC P-256 key in the key store for every certificate. :func:`ensure_responder`
    makes one when none exists or the current one has less than half its lifetime
    left: at ``ehrca init``, lazily on the first request, and from the periodic task
    ``ocsp.responder``. Each new key is an audit event ``ocsp.responder_key_created``.

Pre-signed responses
    Responses without nonce for certificates the CA issued are signed ahead and kept in
    ``ocsp_responses`` (one row per issuer and serial): :func:`presign_responses` runs
    after every revocation (replacing the ``good`` response at once) and from the
    periodic task ``ocsp.refresh``; :func:`answer_request` serves a stored response only
    while it agrees with ``revocations`` (read in the same query) and has more than half
    its validity left, and otherwise signs a fresh one and stores it (SHA-1 CertIDs,
    what OpenSSL and RFC 5019 clients send; other hashes are signed per request). A
    stale row can therefore never be served, whatever the interleaving of workers.
    Requests with a nonce get a freshly signed response echoing it; ``unknown`` answers
    are signed per request and never stored.

In-memory layer
    Every answer of the stored kind carries :attr:`OCSPAnswer.cacheable_until` (the
    instant from which :func:`_cached` would refuse it) and its certificate, so the web
    layer can keep it in :class:`revocation.ocsp_cache.OCSPMemoryCache` and serve it
    without this module until then, or until a revocation evicts it (the rules are in
    that module). The database stays the source of truth: a miss, an eviction or a
    restart only costs one query here.

A response's nextUpdate is at most ``response_validity`` after thisUpdate and never
after the responder certificate's notAfter (so a cached response never outlives the
certificate that verifies it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp as x509_ocsp
from sqlalchemy import and_, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.audit import record_event
from ca.config import CAConfig
from ca.keys import KeyStore, KeyType, PrivateKey
from ca.models import CARole, CertificateAuthority, CertificateRecord, CertificateStatus
from ca.profiles import ca_subject, ocsp_responder_profile
from ca.serials import serial_to_hex
from ca.service import Linter, Signer, issue_certificate
from revocation.models import OCSPResponder, OCSPResponseCache, Revocation
from revocation.ocsp import (
    CertID,
    CertStatus,
    OCSPRequestError,
    SingleStatus,
    issuer_key_bits,
    issuer_name_der,
    load_der_ocsp_request,
    matches_issuer,
    sign_ocsp_response,
    unsuccessful_response,
)
from revocation.queries import authority_by_name

log = logging.getLogger("ehrca.ocsp")

#: Responder key algorithm (its signatures are what every client verifies).
RESPONDER_KEY_TYPE = KeyType.EC_P256
#: Profile name of responder certificates (``ca/profiles.toml``).
RESPONDER_PROFILE = "ocsp_responder"
#: Responses pre-signed per issuing CA and run of ``ocsp.refresh`` (every 10 min: about
#: 8 per second, 360,000 per half validity of 12 h; a certificate beyond that is signed
#: on its first request and stored then).
PRESIGN_BATCH = 5000


@dataclass(frozen=True, slots=True)
class OCSPPolicy:
    """How the responder signs (built by ``api/`` from settings).

    Attributes:
        response_validity: nextUpdate - thisUpdate of good and revoked responses
            (``EHRCA_OCSP_VALIDITY_HOURS``, default 24 h).
        ca_config: URLs, organisation and ``ocsp_responder_validity``
            (``EHRCA_OCSP_RESPONDER_VALIDITY_DAYS``) for responder certificates.
        linter: the pre-signing linter of the issuance pipeline (``None``: no lint).

    Raises:
        ValueError: a response validity under one second.
    """

    response_validity: dt.timedelta
    ca_config: CAConfig
    linter: Linter | None = None

    def __post_init__(self) -> None:
        if self.response_validity < dt.timedelta(seconds=1):
            raise ValueError("OCSP response validity must be at least one second")

    @property
    def renew_before(self) -> dt.timedelta:
        """A responder certificate with less than this left is replaced (half its life)."""
        return self.ca_config.ocsp_responder_validity / 2


@dataclass(frozen=True, slots=True)
class ActiveResponder:
    """A responder ready to sign: its row, certificate and key."""

    row: OCSPResponder
    certificate: x509.Certificate
    key: PrivateKey


@dataclass(frozen=True, slots=True)
class OCSPAnswer:
    """An OCSP response to send.

    Attributes:
        der: the DER ``OCSPResponse`` (``application/ocsp-response``).
        this_update / next_update: of the SingleResponse (``None`` when unsuccessful or
            without nextUpdate): the HTTP cache headers derive from them.
        response_status: ``successful``, ``malformedRequest``, ``unauthorized``, ...
        cert_status: for successful responses.
        from_cache: the pre-signed response was served.
        nonce: the response echoes the request's nonce (it must not be cached).
        cacheable_until: for the pre-signed kind of response only (nonce-free, SHA-1
            CertID, ``good`` or ``revoked``): the instant from which the database would
            no longer serve it (half its validity left, see :func:`_cached`); an
            in-memory cache (:mod:`revocation.ocsp_cache`) may serve it until then.
            ``None`` for every other answer.
        issuer_id / serial_hex / cert_id: the certificate and CertID answered, set
            with ``cacheable_until``.
    """

    der: bytes
    response_status: x509_ocsp.OCSPResponseStatus
    cert_status: CertStatus | None = None
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    from_cache: bool = False
    nonce: bool = False
    cacheable_until: dt.datetime | None = None
    issuer_id: int | None = None
    serial_hex: str | None = None
    cert_id: CertID | None = None


def _unsuccessful(status: x509_ocsp.OCSPResponseStatus) -> OCSPAnswer:
    return OCSPAnswer(unsuccessful_response(status), status)


# ----------------------------------------------------------------------------- responders


def _active(row: OCSPResponder, session: Session, keystore: KeyStore) -> ActiveResponder:
    record = session.get_one(CertificateRecord, row.certificate_id)
    assert record.certificate_der is not None
    return ActiveResponder(
        row, x509.load_der_x509_certificate(record.certificate_der), keystore.load_key(row.key_ref)
    )


def current_responder_row(
    session: Session, issuer_id: int, *, now: dt.datetime, min_remaining: dt.timedelta
) -> OCSPResponder | None:
    """The newest responder of ``issuer_id`` valid at ``now`` with more than
    ``min_remaining`` left, or ``None``."""
    return session.scalars(
        select(OCSPResponder)
        .where(
            OCSPResponder.issuer_id == issuer_id,
            OCSPResponder.not_valid_before <= now,
            OCSPResponder.not_valid_after > now + min_remaining,
        )
        .order_by(OCSPResponder.id.desc())
        .limit(1)
    ).first()


def issue_responder(
    session: Session,
    keystore: KeyStore,
    policy: OCSPPolicy,
    authority: CertificateAuthority,
    *,
    now: dt.datetime,
    actor: str = "system",
) -> ActiveResponder:
    """Create a new responder key and certificate for ``authority`` (commits) and record
    ``ocsp.responder_key_created`` (details: serial, key reference, notAfter, the
    serial it replaces).

    Raises:
        ValueError: ``authority`` is the root (it runs no responder).
        ca.service.LintRefused, ca.checks.CheckRefused: the issuance pipeline refused.
        ca.keys.KeyStoreError: the key cannot be written.
    """
    if authority.role is not CARole.ISSUING:
        raise ValueError(f"{authority.name} is not an issuing CA; only issuing CAs run OCSP")
    previous = session.scalars(
        select(OCSPResponder)
        .where(OCSPResponder.issuer_id == authority.id)
        .order_by(OCSPResponder.id.desc())
        .limit(1)
    ).first()
    previous_serial = (
        session.get_one(CertificateRecord, previous.certificate_id).serial_number
        if previous is not None
        else None
    )
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    key_ref, key = keystore.create_key(
        f"ocsp-{authority.name}-{stamp}-{secrets.token_hex(4)}", RESPONDER_KEY_TYPE
    )
    signer = Signer(
        authority,
        x509.load_der_x509_certificate(authority.certificate_der),
        keystore.load_key(authority.key_ref),
    )
    config = policy.ca_config
    record, certificate = issue_certificate(
        session,
        signer,
        ocsp_responder_profile(config.ocsp_responder_validity),
        subject=ca_subject(config.organization, f"OCSP Responder {authority.name}"[:64]),
        public_key=key.public_key(),
        now=now,
        config=config,
        linter=policy.linter,
    )
    row = OCSPResponder(
        issuer_id=authority.id,
        certificate_id=record.id,
        key_ref=key_ref,
        not_valid_before=certificate.not_valid_before_utc,
        not_valid_after=certificate.not_valid_after_utc,
        created_at=now,
    )
    session.add(row)
    record_event(
        session,
        "ocsp.responder_key_created",
        actor=actor,
        now=now,
        subject=authority.name,
        details={
            "serial_number": record.serial_number,
            "key_ref": key_ref,
            "not_valid_after": certificate.not_valid_after_utc.isoformat(),
            "replaces": previous_serial,
        },
    )
    session.commit()
    log.info("OCSP responder %s for %s created", record.serial_number, authority.name)
    return ActiveResponder(row, certificate, key)


def ensure_responder(
    session: Session,
    keystore: KeyStore,
    policy: OCSPPolicy,
    authority: CertificateAuthority,
    *,
    now: dt.datetime,
    actor: str = "system",
) -> tuple[ActiveResponder, bool]:
    """The current responder of ``authority``, made or renewed first if it has less
    than :attr:`OCSPPolicy.renew_before` left (or none exists).

    Returns:
        ``(responder, created)``.

    Raises:
        See :func:`issue_responder`.
    """
    row = current_responder_row(session, authority.id, now=now, min_remaining=policy.renew_before)
    if row is not None:
        return _active(row, session, keystore), False
    return issue_responder(session, keystore, policy, authority, now=now, actor=actor), True


def ensure_all_responders(
    session: Session, keystore: KeyStore, policy: OCSPPolicy, *, now: dt.datetime
) -> list[str]:
    """Run :func:`ensure_responder` for every active issuing CA; returns the names of
    the CAs that got a new responder (the ``ocsp.responder`` task, ``ehrca init``)."""
    authorities = session.scalars(
        select(CertificateAuthority).where(
            CertificateAuthority.role == CARole.ISSUING, CertificateAuthority.active.is_(True)
        )
    ).all()
    created = []
    for authority in authorities:
        _, new = ensure_responder(session, keystore, policy, authority, now=now)
        if new:
            created.append(authority.name)
    return created


def remove_responders(session: Session) -> None:
    """Delete every responder and stored response (commits): only for undoing a failed
    ``ehrca init``, before ``ca.service.remove_hierarchy``."""
    session.execute(delete(OCSPResponseCache))
    session.execute(delete(OCSPResponder))
    session.commit()


# ----------------------------------------------------------------------------- statuses


@dataclass(frozen=True, slots=True)
class _Known:
    """A certificate of this issuer as the responder sees it, with its stored
    response (if any), read in one query."""

    serial_hex: str
    revocation: Revocation | None
    stored: OCSPResponseCache | None = None


def _lookup(session: Session, issuer_id: int, serial_number: int) -> _Known | None:
    """The certificate ``serial_number`` of ``issuer_id`` if it was issued (or revoked
    while reserved), with its revocation and stored response; ``None`` for a serial
    this issuer never issued."""
    try:
        serial_hex = serial_to_hex(serial_number)
    except ValueError:  # zero, negative or over 20 octets: never one of ours
        return None
    row = session.execute(
        select(CertificateRecord.status, Revocation, OCSPResponseCache)
        .outerjoin(Revocation, Revocation.certificate_id == CertificateRecord.id)
        .outerjoin(
            OCSPResponseCache,
            and_(
                OCSPResponseCache.issuer_id == CertificateRecord.issuer_id,
                OCSPResponseCache.serial_number == CertificateRecord.serial_number,
            ),
        )
        .where(
            CertificateRecord.issuer_id == issuer_id,
            CertificateRecord.serial_number == serial_hex,
        )
    ).first()
    if row is None:
        return None
    status, revocation, stored = row
    if revocation is None and status is not CertificateStatus.ISSUED:
        return None  # reserved, never signed as far as the database knows
    return _Known(serial_hex, revocation, stored)


def _status_of(
    known: _Known | None, policy: OCSPPolicy, responder: ActiveResponder, now: dt.datetime
) -> SingleStatus:
    this_update = now.astimezone(dt.UTC).replace(microsecond=0)
    if known is None:
        return SingleStatus(CertStatus.UNKNOWN, this_update, None)
    next_update = min(
        this_update + policy.response_validity, responder.certificate.not_valid_after_utc
    )
    if next_update <= this_update:  # the responder expires this second: no nextUpdate
        next_update = this_update + dt.timedelta(seconds=1)
    revocation = known.revocation
    if revocation is None:
        return SingleStatus(CertStatus.GOOD, this_update, next_update)
    return SingleStatus(
        CertStatus.REVOKED,
        this_update,
        next_update,
        revocation_time=revocation.revocation_date,
        revocation_reason=x509.ReasonFlags(revocation.revocation_reason),
    )


def _store(
    session: Session,
    issuer_id: int,
    serial_hex: str,
    status: SingleStatus,
    responder: ActiveResponder,
    der: bytes,
    *,
    stored: OCSPResponseCache | None = None,
    commit: bool = True,
) -> None:
    """Insert or replace the stored response (``stored``: the row read with the
    certificate, if any). With ``commit`` (default) commit now; a concurrent writer's
    row wins (a duplicate-key error is rolled back and ignored)."""
    assert status.next_update is not None
    values = {
        "cert_status": status.cert_status.value,
        "responder_id": responder.row.id,
        "this_update": status.this_update,
        "next_update": status.next_update,
        "response_der": der,
    }
    if stored is None:
        session.add(OCSPResponseCache(issuer_id=issuer_id, serial_number=serial_hex, **values))
    else:
        for name, value in values.items():
            setattr(stored, name, value)
    if commit:
        try:
            session.commit()
        except IntegrityError:
            session.rollback()


def presign_responses(
    session: Session,
    keystore: KeyStore,
    policy: OCSPPolicy,
    authority: CertificateAuthority,
    serial_numbers: Iterable[str],
    *,
    now: dt.datetime,
) -> int:
    """Sign and store the nonce-free response of each certificate (40-hex serials) of
    ``authority`` in one transaction (commits); serials it never issued are skipped.
    Returns how many responses were stored (0 if a concurrent writer stored one of
    them first: the batch is rolled back and the next request or run signs again)."""
    responder, _ = ensure_responder(session, keystore, policy, authority, now=now)
    stored = 0
    certificate = x509.load_der_x509_certificate(authority.certificate_der)
    for serial_hex in serial_numbers:
        known = _lookup(session, authority.id, int(serial_hex, 16))
        if known is None:
            continue
        status = _status_of(known, policy, responder, now)
        cert_id = _cert_id_for(certificate, int(serial_hex, 16))
        der = sign_ocsp_response(
            cert_id,
            status,
            responder_certificate=responder.certificate,
            responder_key=responder.key,
        )
        _store(
            session,
            authority.id,
            serial_hex,
            status,
            responder,
            der,
            stored=known.stored,
            commit=False,
        )
        stored += 1
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return 0
    return stored


def _cert_id_for(issuer: x509.Certificate, serial_number: int) -> CertID:
    """The SHA-1 CertID (what OpenSSL and most clients send, RFC 5019 2.1.1) of
    ``serial_number`` under ``issuer``."""
    return CertID(
        hashes.SHA1(),  # noqa: S303 - a CertID hash, not a signature
        hashlib.sha1(issuer_name_der(issuer)).digest(),  # noqa: S324
        hashlib.sha1(issuer_key_bits(issuer)).digest(),  # noqa: S324
        serial_number,
    )


def refresh_responses(
    session: Session,
    keystore: KeyStore,
    policy: OCSPPolicy,
    *,
    now: dt.datetime,
    batch: int = PRESIGN_BATCH,
) -> int:
    """Pre-sign responses for unexpired certificates whose stored response is missing,
    past half its validity or signed by an older responder, at most ``batch`` per
    issuing CA (the ``ocsp.refresh`` task). Returns how many were signed."""
    total = 0
    authorities = session.scalars(
        select(CertificateAuthority).where(
            CertificateAuthority.role == CARole.ISSUING, CertificateAuthority.active.is_(True)
        )
    ).all()
    for authority in authorities:
        responder, _ = ensure_responder(session, keystore, policy, authority, now=now)
        fresh_until = now + policy.response_validity / 2
        serials = session.scalars(
            select(CertificateRecord.serial_number)
            .outerjoin(
                OCSPResponseCache,
                and_(
                    OCSPResponseCache.issuer_id == CertificateRecord.issuer_id,
                    OCSPResponseCache.serial_number == CertificateRecord.serial_number,
                ),
            )
            .where(
                CertificateRecord.issuer_id == authority.id,
                CertificateRecord.profile != RESPONDER_PROFILE,  # nocheck: never asked
                CertificateRecord.status.in_([CertificateStatus.ISSUED, CertificateStatus.REVOKED]),
                CertificateRecord.not_valid_after > now,
                (OCSPResponseCache.id.is_(None))
                | (OCSPResponseCache.next_update < fresh_until)
                | (OCSPResponseCache.responder_id != responder.row.id),
            )
            .order_by(CertificateRecord.id)
            .limit(batch)
        ).all()
        total += presign_responses(session, keystore, policy, authority, serials, now=now)
    return total


# ----------------------------------------------------------------------------- answering


def answer_request(
    session: Session,
    keystore: KeyStore,
    policy: OCSPPolicy,
    authority: CertificateAuthority,
    request_der: bytes,
    *,
    now: dt.datetime,
) -> OCSPAnswer:
    """Answer one OCSP request addressed to ``authority`` (RFC 6960 2.2, 2.3).

    - garbage, several requests, a nonce over 32 octets: ``malformedRequest``;
    - a CertID naming another issuer (or the root, which runs no responder):
      ``unauthorized``;
    - otherwise a signed response: ``good`` for a certificate this CA issued and has
      not revoked, ``revoked`` with time and reason, ``unknown`` for any other serial.

    Never raises for bad input; database or key store failures propagate (the HTTP
    layer answers ``tryLater``).
    """
    try:
        parsed = load_der_ocsp_request(request_der)
    except OCSPRequestError:
        return _unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if authority.role is not CARole.ISSUING or not matches_issuer(
        parsed.cert_id, authority.certificate_der
    ):
        return _unsuccessful(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED)
    known = _lookup(session, authority.id, parsed.cert_id.serial_number)
    storable = known is not None and parsed.nonce is None and _is_default_cert_id(parsed.cert_id)
    if storable:
        assert known is not None
        cached = _cached(policy, known, now=now)
        if cached is not None:
            return dataclasses.replace(
                cached, issuer_id=authority.id, serial_hex=known.serial_hex, cert_id=parsed.cert_id
            )
    responder, _ = ensure_responder(session, keystore, policy, authority, now=now)
    status = _status_of(known, policy, responder, now)
    der = sign_ocsp_response(
        parsed.cert_id,
        status,
        responder_certificate=responder.certificate,
        responder_key=responder.key,
        nonce=parsed.nonce,
    )
    if not storable:
        return OCSPAnswer(
            der,
            x509_ocsp.OCSPResponseStatus.SUCCESSFUL,
            status.cert_status,
            status.this_update,
            status.next_update,
            nonce=parsed.nonce is not None,
        )
    assert known is not None and status.next_update is not None
    _store(session, authority.id, known.serial_hex, status, responder, der, stored=known.stored)
    return OCSPAnswer(
        der,
        x509_ocsp.OCSPResponseStatus.SUCCESSFUL,
        status.cert_status,
        status.this_update,
        status.next_update,
        cacheable_until=status.next_update - policy.response_validity / 2,
        issuer_id=authority.id,
        serial_hex=known.serial_hex,
        cert_id=parsed.cert_id,
    )


def _is_default_cert_id(cert_id: CertID) -> bool:
    """Stored responses use SHA-1 CertIDs; a response for another hash is not stored
    (its SingleResponse must echo the client's CertID, RFC 6960 4.2.1)."""
    return cert_id.hash_algorithm.name == "sha1"


def _cached(policy: OCSPPolicy, known: _Known, *, now: dt.datetime) -> OCSPAnswer | None:
    """The stored response if it still holds: the status ``revocations`` says now (read
    in the same query), more than half its validity left. Which responder signed it
    does not matter: its nextUpdate is within that responder's validity, and the task
    ``ocsp.refresh`` re-signs responses of older responders."""
    row = known.stored
    if row is None:
        return None
    expected = CertStatus.GOOD if known.revocation is None else CertStatus.REVOKED
    if (
        row.cert_status != expected.value
        or row.this_update > now
        or row.next_update - now <= policy.response_validity / 2
    ):
        return None
    return OCSPAnswer(
        row.response_der,
        x509_ocsp.OCSPResponseStatus.SUCCESSFUL,
        expected,
        row.this_update,
        row.next_update,
        from_cache=True,
        cacheable_until=row.next_update - policy.response_validity / 2,
    )


def answer(
    session: Session,
    keystore: KeyStore,
    policy: OCSPPolicy,
    ca_name: str,
    request_der: bytes,
    *,
    now: dt.datetime,
) -> OCSPAnswer:
    """Answer an OCSP request sent to the responder URL of CA ``ca_name``
    (``PkiUrls.ocsp``). Never raises: an unknown CA name is ``unauthorized``; a
    database or key store failure is logged and answered ``tryLater`` (RFC 6960 2.3),
    so a client never sees an HTTP error for an OCSP request."""
    try:
        authority = authority_by_name(session, ca_name)
        if authority is None:
            return _unsuccessful(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED)
        return answer_request(session, keystore, policy, authority, request_der, now=now)
    except Exception:
        with contextlib.suppress(Exception):  # the database may be what failed
            session.rollback()
        log.exception("OCSP request for %s failed", ca_name[:64])
        return _unsuccessful(x509_ocsp.OCSPResponseStatus.TRY_LATER)
