"""Revocation use cases: revoke one certificate or all of a provider or a service
location (durable before they are acknowledged), publish CRLs.

Revoking
    :func:`revoke_and_publish` is the use case an HTTP handler calls: it commits the
    revocation (:func:`revoke_certificate`) and then, after the commit,
    :func:`publish_revocations` marks the certificate revoked in this process's
    :class:`~revocation.status.RevocationStatusCache` (the mTLS listener refuses it from
    the next request on), re-signs the issuer's full CRL and, with partitioned CRLs,
    the certificate's partition (within the request, well under a second), replaces
    the pre-signed OCSP response, and runs the CRL listeners (the mTLS listener's SSL
    context swap). A failure after the commit is logged and reported in the outcome,
    never raised: the revocation stands, and the scheduler re-signs the CRL.

    :func:`revoke_provider_certificates` and :func:`revoke_location_certificates` revoke
    every certificate of a provider or of one service location in one transaction (for
    deregistration).

    Every revocation transaction first takes the audit chain's head lock
    (:func:`ca.audit.lock_chain`) and only then reads the certificate and inserts the
    ``revocations`` row: revocations are serialised, a concurrent revocation of the same
    certificate is seen (409, never a duplicate-key error), and ``revocations.id``
    grows in commit order, which the status cache's high-water mark relies on.

CRLs
    CRL publication is single-writer per issuer: the CRL number is taken with
    ``UPDATE certificate_authorities SET crl_number = crl_number + 1 ... RETURNING``,
    which row-locks on PostgreSQL and takes SQLite's write lock, and the new CRL row is
    committed in the same transaction: CRL numbers strictly grow across restarts and
    workers, and two publishers never sign the same number (RFC 5280 5.2.3). One
    counter per issuer serves the full CRL and every partition, so numbers are unique
    per issuer across scopes.

    An entry stays on the CRL until its certificate's notAfter plus
    :attr:`CRLPolicy.keep_expired` is before thisUpdate (RFC 5280 3.3 allows removal
    after expiry; with ``keep_expired`` 0 an entry is dropped from the first CRL signed
    after the certificate expired).

    With :attr:`CRLPolicy.shards` above 1, each issuing CA also publishes partitions
    1..n; partition k lists the revoked certificates whose CRL distribution point names
    it (``certificates.crl_shard``) and carries a critical issuingDistributionPoint with
    that URL (RFC 5280 5.2.5). The full CRL stays available (no issuingDistributionPoint,
    so it covers every certificate).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from ca.audit import lock_chain, record_event
from ca.blocklist import block_key
from ca.config import PkiUrls
from ca.keys import KeyStore
from ca.models import CARole, CertificateAuthority, CertificateRecord, CertificateStatus
from ca.service import get_authority
from db.driver import driver_parameters, uses_driver_cursor
from revocation.crl import CRLEntry, partition_distribution_point
from revocation.crl_der import assemble_crl, encode_crl_entry
from revocation.errors import AlreadyRevoked, CertificateNotFound, InvalidRevocationRequest
from revocation.models import OCSPResponseCache, PublishedCRL, Revocation
from revocation.policy import check_reason
from revocation.queries import authority_by_name
from revocation.responder import OCSPPolicy, presign_responses
from revocation.status import RevocationStatusCache

log = logging.getLogger("ehrca.revocation")

ZERO = dt.timedelta(0)
#: Published CRLs kept per issuer and scope (older rows are deleted on publication).
CRL_HISTORY = 5
_SHARD_URL = re.compile(r"/shard-([0-9]+)\.crl$")


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class CRLPolicy:
    """How CRLs are published (built by ``api/`` from settings).

    Attributes:
        validity: nextUpdate - thisUpdate (``EHRCA_CRL_VALIDITY_HOURS``, default 24 h).
        urls: the public URL layout; needed for partitions (issuingDistributionPoint).
        keep_expired: how long an entry stays after its certificate's notAfter
            (``EHRCA_CRL_KEEP_EXPIRED_DAYS``, default 0).
        shards: partitions per issuing CA (``EHRCA_CRL_SHARDS``; 1: not partitioned).
        refresh: the scheduled re-signing interval (``EHRCA_CRL_REFRESH_SECONDS``);
            :func:`publish_due_crls` re-signs a scope whose CRL is older than half of it.

    Raises:
        ValueError: validity or refresh under one second, refresh not below validity
            (nextUpdate would lapse between two runs), a negative ``keep_expired``,
            ``shards`` below 1, or partitions without ``urls``.
    """

    validity: dt.timedelta
    urls: PkiUrls | None = None
    keep_expired: dt.timedelta = ZERO
    shards: int = 1
    refresh: dt.timedelta = dt.timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.validity < dt.timedelta(seconds=1) or self.refresh < dt.timedelta(seconds=1):
            raise ValueError("CRL validity and refresh interval must be at least one second")
        if self.refresh >= self.validity:
            raise ValueError("the CRL refresh interval must be shorter than the CRL validity")
        if self.keep_expired < ZERO:
            raise ValueError("keep_expired must not be negative")
        if self.shards < 1:
            raise ValueError("shards must be at least 1")
        if self.shards > 1 and self.urls is None:
            raise ValueError("partitioned CRLs need the PKI URLs (issuingDistributionPoint)")


@dataclass(frozen=True, slots=True)
class RevocationContext:
    """What the revocation use cases need besides the session (built by ``api/``).

    Attributes:
        keystore: CA and responder keys.
        crl: CRL publication policy.
        ocsp: responder policy; ``None``: no OCSP responses are pre-signed.
        status: this process's revocation status (marked right after each commit).
        on_crl_published: run after CRLs were published (e.g. the mTLS listener swaps
            in a fresh SSL context); its exceptions are logged, never raised.
    """

    keystore: KeyStore
    crl: CRLPolicy
    ocsp: OCSPPolicy | None = None
    status: RevocationStatusCache | None = None
    on_crl_published: Callable[[], None] | None = None


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class RevocationResult:
    """What a revocation did: the row, and the certificate it concerned."""

    revocation: Revocation
    certificate: CertificateRecord


@dataclass(frozen=True, slots=True)
class PublicationOutcome:
    """What happened after the commit (see :func:`publish_revocations`).

    Attributes:
        crls: the CRLs signed (full CRLs and partitions), in publication order.
        ocsp_responses: pre-signed OCSP responses replaced.
        errors: one line per failed step (``crl: ...``, ``ocsp: ...``); empty when all
            went well. The revocations stand either way.
    """

    crls: tuple[PublishedCRL, ...] = ()
    ocsp_responses: int = 0
    errors: tuple[str, ...] = ()

    def crl_number(self, issuer_id: int, shard: int | None = None) -> int | None:
        """The number of the CRL published for ``issuer_id`` (full, or ``shard``)."""
        for row in self.crls:
            if row.issuer_id == issuer_id and row.shard == shard:
                return row.crl_number
        return None


@dataclass(frozen=True, slots=True)
class RevocationOutcome:
    """A committed revocation and what was published after it.

    Attributes:
        crl_number: number of the issuer's full CRL that lists it (``None`` if that
            publication failed: the scheduler will re-sign).
        shard_crl_number: number of the partition CRL that lists it (``None`` when not
            partitioned or that publication failed).
    """

    revocation: Revocation
    certificate: CertificateRecord
    publication: PublicationOutcome

    @property
    def crl_number(self) -> int | None:
        """See the class docstring."""
        return self.publication.crl_number(self.revocation.issuer_id)

    @property
    def shard_crl_number(self) -> int | None:
        """See the class docstring."""
        shard = self.revocation.crl_shard
        return (
            None if shard is None else self.publication.crl_number(self.revocation.issuer_id, shard)
        )


@dataclass(frozen=True, slots=True)
class BulkRevocationResult:
    """Result of :func:`revoke_provider_certificates` / :func:`revoke_location_certificates`.

    Attributes:
        revocations: the revocations made, in certificate id order (empty if none).
        already_revoked: serials (40 hex) of matching certificates revoked before.
        publication: what was published after the commit (empty when not committed
            or no context was given).
    """

    revocations: tuple[Revocation, ...]
    already_revoked: tuple[str, ...]
    publication: PublicationOutcome = field(default_factory=PublicationOutcome)

    @property
    def serial_numbers(self) -> tuple[str, ...]:
        """The serials (40 hex) revoked by this call."""
        return tuple(r.serial_number for r in self.revocations)


# ----------------------------------------------------------------------------- revoking


def _check_invalidity_date(
    invalidity_date: dt.datetime | None, now: dt.datetime
) -> dt.datetime | None:
    """Validate an invalidity date (RFC 5280 5.3.2) and return it in UTC, whole seconds.

    Raises:
        InvalidRevocationRequest: naive, in the future or out of range.
    """
    if invalidity_date is None:
        return None
    if invalidity_date.tzinfo is None:
        raise InvalidRevocationRequest("invalidity_date must carry a timezone (use Z for UTC)")
    if invalidity_date > now:
        raise InvalidRevocationRequest("invalidity_date must not be in the future")
    try:
        return invalidity_date.astimezone(dt.UTC).replace(microsecond=0)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        raise InvalidRevocationRequest("invalidity_date is out of range") from exc


def crl_shard_of(record: CertificateRecord) -> int | None:
    """The CRL partition of ``record``: ``crl_shard``, or for a row reserved but never
    completed (a crash between reservation and signature), the shard in the CRL
    distribution point of its recorded to-be-signed certificate."""
    if record.crl_shard is not None:
        return record.crl_shard
    try:
        tbs = asn1_x509.TbsCertificate.load(record.tbs_certificate_der)
        for extension in tbs["extensions"]:
            if extension["extn_id"].native != "crl_distribution_points":
                continue
            for point in extension["extn_value"].parsed:
                for name in point["distribution_point"].chosen:
                    match = _SHARD_URL.search(str(name.native))
                    if match:
                        return int(match.group(1))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return None


def _stage_revocation(
    session: Session,
    record: CertificateRecord,
    *,
    reason: x509.ReasonFlags,
    invalidity_date: dt.datetime | None,
    actor: str,
    actor_role: str,
    now: dt.datetime,
    scope: str,
) -> Revocation:
    """Stage the revocation of ``record`` (the caller holds the chain lock and commits):
    the audit event, the ``revocations`` row (with its CRL entry's DER, see
    :func:`revocation.crl_der.encode_crl_entry`), the certificate status, the key on the
    block list for keyCompromise, and the stored OCSP response dropped."""
    record_event(
        session,
        "certificate.revoked",
        actor=actor,
        now=now,
        subject=record.serial_number,
        details={
            "reason": reason.value,
            "invalidity_date": invalidity_date.isoformat() if invalidity_date else None,
            "role": actor_role,
            "scope": scope,
        },
    )
    revocation_date = now.astimezone(dt.UTC).replace(microsecond=0)
    revocation = Revocation(
        certificate_id=record.id,
        issuer_id=record.issuer_id,
        serial_number=record.serial_number,
        revocation_date=revocation_date,
        revocation_reason=reason.value,
        invalidity_date=invalidity_date,
        revoked_by=actor,
        not_valid_after=record.not_valid_after,
        crl_shard=crl_shard_of(record),
        entry_der=encode_crl_entry(
            int(record.serial_number, 16), revocation_date, reason, invalidity_date
        ),
    )
    record.status = CertificateStatus.REVOKED
    session.add(revocation)
    if reason is x509.ReasonFlags.key_compromise:
        der = record.certificate_der
        if der is not None:
            public_key = x509.load_der_x509_certificate(der).public_key()
            block_key(session, public_key, reason="keyCompromise", actor=actor, now=now)  # type: ignore[arg-type]
    session.execute(
        delete(OCSPResponseCache).where(
            OCSPResponseCache.issuer_id == record.issuer_id,
            OCSPResponseCache.serial_number == record.serial_number,
        )
    )
    session.flush()
    return revocation


def _already_revoked(session: Session, record: CertificateRecord) -> AlreadyRevoked:
    existing = session.scalars(
        select(Revocation).where(Revocation.certificate_id == record.id)
    ).first()
    if existing is None:  # status says revoked but no row: report what is known
        return AlreadyRevoked(
            f"certificate {record.serial_number} was revoked already",
            serial_number=record.serial_number,
        )
    return AlreadyRevoked(
        f"certificate {record.serial_number} was revoked already",
        serial_number=existing.serial_number,
        revocation_date=existing.revocation_date.isoformat(),
        revocation_reason=existing.revocation_reason,
        invalidity_date=existing.invalidity_date.isoformat() if existing.invalidity_date else None,
    )


def revoke_certificate(
    session: Session,
    *,
    serial_hex: str,
    reason: x509.ReasonFlags,
    actor: str,
    actor_role: str,
    now: dt.datetime,
    invalidity_date: dt.datetime | None = None,
    provider_reference: str | None = None,
) -> RevocationResult:
    """Revoke the certificate with ``serial_hex`` and commit before returning (nothing
    is published: see :func:`revoke_and_publish`).

    Args:
        serial_hex: 40 lowercase hex digits (``ca.serials.serial_to_hex``).
        reason: RFC 5280 5.3.1 reason code.
        actor: who revokes (officer name or application reference; audit trail).
        actor_role: ``security_officer`` or ``applicant`` (see ``revocation.policy``).
        now: aware; the revocation date (whole seconds).
        invalidity_date: when the key is known or suspected to have been compromised
            (RFC 5280 5.3.2); aware, not after ``now``.
        provider_reference: when set (an applicant revoking), the certificate must
            belong to that provider, else it is reported as not found.

    Raises:
        ReasonNotAllowed: the role may not use ``reason``.
        InvalidRevocationRequest: bad ``invalidity_date``.
        CertificateNotFound: no such certificate (or not the provider's).
        AlreadyRevoked: revoked before; ``detail`` carries the existing revocation
            (serial_number, revocation_date, revocation_reason, invalidity_date).
    """
    check_reason(actor_role, reason)
    invalidity_date = _check_invalidity_date(invalidity_date, now)
    try:
        lock_chain(session)
        query = select(CertificateRecord).where(CertificateRecord.serial_number == serial_hex)
        if provider_reference is not None:
            query = query.where(CertificateRecord.provider_reference == provider_reference)
        record = session.scalars(query.order_by(CertificateRecord.id.desc()).limit(1)).first()
        if record is None:
            raise CertificateNotFound(f"no certificate with serial number {serial_hex}")
        if record.status is CertificateStatus.REVOKED:
            raise _already_revoked(session, record)
        revocation = _stage_revocation(
            session,
            record,
            reason=reason,
            invalidity_date=invalidity_date,
            actor=actor,
            actor_role=actor_role,
            now=now,
            scope="certificate",
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return RevocationResult(revocation, record)


def _revoke_matching(
    session: Session,
    conditions: Sequence[object],
    *,
    reason: x509.ReasonFlags,
    actor: str,
    actor_role: str,
    now: dt.datetime,
    invalidity_date: dt.datetime | None,
    scope: str,
    context: RevocationContext | None,
    commit: bool,
) -> BulkRevocationResult:
    check_reason(actor_role, reason)
    invalidity_date = _check_invalidity_date(invalidity_date, now)
    try:
        lock_chain(session)
        records = session.scalars(
            select(CertificateRecord).where(*conditions).order_by(CertificateRecord.id)  # type: ignore[arg-type]
        ).all()
        revocations = []
        already = []
        for record in records:
            if record.status is CertificateStatus.REVOKED:
                already.append(record.serial_number)
                continue
            revocations.append(
                _stage_revocation(
                    session,
                    record,
                    reason=reason,
                    invalidity_date=invalidity_date,
                    actor=actor,
                    actor_role=actor_role,
                    now=now,
                    scope=scope,
                )
            )
        if commit:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    result = BulkRevocationResult(tuple(revocations), tuple(already))
    if commit and context is not None and revocations:
        publication = publish_revocations(session, context, revocations, now=now)
        result = BulkRevocationResult(result.revocations, result.already_revoked, publication)
    return result


def revoke_provider_certificates(
    session: Session,
    provider_reference: str,
    reason: x509.ReasonFlags,
    *,
    actor: str,
    now: dt.datetime,
    actor_role: str = "security_officer",
    invalidity_date: dt.datetime | None = None,
    context: RevocationContext | None = None,
    commit: bool = True,
) -> BulkRevocationResult:
    """Revoke every certificate of provider ``provider_reference`` (all its service
    locations, issued or only reserved) in ONE transaction: all or none.

    For deregistration (registration calls it). Certificates revoked before are
    skipped and listed in ``already_revoked``; a provider without certificates gives
    an empty result (not an error).

    Args:
        session: the caller's session; with ``commit=False`` the revocations are only
            staged in it (with the caller's own changes, e.g. the application's new
            status) and the caller commits, then calls :func:`publish_revocations`
            with ``result.revocations``.
        provider_reference: the application reference (``HCP-XXXXXXXX``).
        reason: RFC 5280 5.3.1, e.g. ``x509.ReasonFlags.cessation_of_operation``.
        actor: who (officer name, reference or ``system``), for the audit trail (one
            ``certificate.revoked`` event per certificate, ``scope`` ``provider``).
        now: aware; the revocation date.
        actor_role: the policy role whose reasons apply (default ``security_officer``:
            any reason but removeFromCRL; ``applicant``: keyCompromise, superseded).
        invalidity_date: RFC 5280 5.3.2, for keyCompromise; aware, not after ``now``.
        context: with ``commit=True``, publish after the commit (status cache, CRLs,
            OCSP, listeners) as :func:`revoke_and_publish` does; ``None``: only commit
            (the mTLS check and the scheduler pick the revocations up).
        commit: commit here (default) or leave it to the caller.

    Returns:
        :class:`BulkRevocationResult`.

    Raises:
        ReasonNotAllowed, InvalidRevocationRequest: before anything is staged. A
        database error rolls the whole session back (the caller's staged work too).
    """
    return _revoke_matching(
        session,
        [CertificateRecord.provider_reference == provider_reference],
        reason=reason,
        actor=actor,
        actor_role=actor_role,
        now=now,
        invalidity_date=invalidity_date,
        scope="provider",
        context=context,
        commit=commit,
    )


def revoke_location_certificates(
    session: Session,
    provider_reference: str,
    service_location_id: int,
    reason: x509.ReasonFlags,
    *,
    actor: str,
    now: dt.datetime,
    actor_role: str = "security_officer",
    invalidity_date: dt.datetime | None = None,
    context: RevocationContext | None = None,
    commit: bool = True,
) -> BulkRevocationResult:
    """Revoke every certificate of one service location in ONE transaction.

    Args:
        provider_reference: the location's provider (a location id of another provider
            matches nothing).
        service_location_id: the location's database id (``ServiceLocation.id``, as
            stored in ``certificates.service_location_id``), not its number in the API.
        Everything else as :func:`revoke_provider_certificates` (audit ``scope``
        ``service_location``).

    Returns:
        :class:`BulkRevocationResult`.

    Raises:
        As :func:`revoke_provider_certificates`.
    """
    return _revoke_matching(
        session,
        [
            CertificateRecord.provider_reference == provider_reference,
            CertificateRecord.service_location_id == service_location_id,
        ],
        reason=reason,
        actor=actor,
        actor_role=actor_role,
        now=now,
        invalidity_date=invalidity_date,
        scope="service_location",
        context=context,
        commit=commit,
    )


def publish_revocations(
    session: Session,
    context: RevocationContext,
    revocations: Sequence[Revocation],
    *,
    now: dt.datetime,
) -> PublicationOutcome:
    """After committed ``revocations``: mark them in the status cache, re-sign each
    issuer's full CRL and the partitions they fall in, replace their pre-signed OCSP
    responses, run ``on_crl_published``. Never raises: failures are logged and listed
    in :attr:`PublicationOutcome.errors`."""
    if context.status is not None:
        for revocation in revocations:
            context.status.mark_revoked(revocation.issuer_id, revocation.serial_number)
    scopes: dict[int, set[int]] = {}
    for revocation in revocations:
        shards = scopes.setdefault(revocation.issuer_id, set())
        if revocation.crl_shard is not None and context.crl.shards > 1:
            shards.add(revocation.crl_shard)
    crls: list[PublishedCRL] = []
    errors: list[str] = []
    policy = context.crl
    for issuer_id, shards in scopes.items():
        for shard in [None, *sorted(shards)]:
            try:
                crls.append(
                    publish_crl(
                        session,
                        context.keystore,
                        issuer_id,
                        now=now,
                        validity=policy.validity,
                        keep_expired=policy.keep_expired,
                        shard=shard,
                        urls=policy.urls,
                    )
                )
            except Exception as exc:  # the revocation is committed; the scheduler re-signs
                log.exception("CRL publication after revocation failed")
                errors.append(f"crl: {type(exc).__name__}")
    if crls and context.on_crl_published is not None:
        try:
            context.on_crl_published()
        except Exception as exc:  # a listener must not undo a committed publication
            log.exception("CRL listener failed")
            errors.append(f"crl listener: {type(exc).__name__}")
    stored = 0
    if context.ocsp is not None:
        for issuer_id in scopes:
            serials = [r.serial_number for r in revocations if r.issuer_id == issuer_id]
            try:
                authority = session.get_one(CertificateAuthority, issuer_id)
                if authority.role is CARole.ISSUING:
                    stored += presign_responses(
                        session, context.keystore, context.ocsp, authority, serials, now=now
                    )
            except Exception as exc:  # answer_request signs afresh when none is stored
                session.rollback()
                log.exception("OCSP re-signing after revocation failed")
                errors.append(f"ocsp: {type(exc).__name__}")
    return PublicationOutcome(tuple(crls), stored, tuple(errors))


def revoke_and_publish(
    session: Session,
    context: RevocationContext,
    *,
    serial_hex: str,
    reason: x509.ReasonFlags,
    actor: str,
    actor_role: str,
    now: dt.datetime,
    invalidity_date: dt.datetime | None = None,
    provider_reference: str | None = None,
) -> RevocationOutcome:
    """The revocation use case: :func:`revoke_certificate` (committed: durable before
    this returns), then :func:`publish_revocations`.

    Raises:
        As :func:`revoke_certificate` (nothing after the commit raises).
    """
    result = revoke_certificate(
        session,
        serial_hex=serial_hex,
        reason=reason,
        actor=actor,
        actor_role=actor_role,
        now=now,
        invalidity_date=invalidity_date,
        provider_reference=provider_reference,
    )
    publication = publish_revocations(session, context, [result.revocation], now=now)
    return RevocationOutcome(result.revocation, result.certificate, publication)


# ----------------------------------------------------------------------------- CRLs


def crl_entries(
    session: Session,
    issuer_id: int,
    *,
    shard: int | None = None,
    expired_before: dt.datetime | None = None,
) -> list[CRLEntry]:
    """The revocations of ``issuer_id`` as CRL entries, in revocation order.

    Args:
        shard: only those of this partition (``None``: all).
        expired_before: leave out certificates whose notAfter is before this instant.
    """
    query = select(
        Revocation.serial_number,
        Revocation.revocation_date,
        Revocation.revocation_reason,
        Revocation.invalidity_date,
    ).where(Revocation.issuer_id == issuer_id)
    if shard is not None:
        query = query.where(Revocation.crl_shard == shard)
    if expired_before is not None:
        query = query.where(Revocation.not_valid_after >= expired_before)
    rows = session.execute(query.order_by(Revocation.id)).all()
    return [
        CRLEntry(int(serial, 16), revoked_at, x509.ReasonFlags(reason), invalid_at)
        for serial, revoked_at, reason, invalid_at in rows
    ]


#: Rows per fetch when streaming stored CRL entries (about 0.5 MB of DER).
ENTRY_BATCH = 10_000


def crl_entry_query(
    issuer_id: int, *, shard: int | None = None, expired_before: dt.datetime | None = None
) -> Select[bytes]:
    """The stored DER (``revocations.entry_der``) of the entries a CRL of ``issuer_id``
    lists, in revocation order (``revocations.id``), as :func:`crl_entries` selects them.

    Args:
        shard: only those of this partition (``None``: all).
        expired_before: leave out certificates whose notAfter is before this instant.
    """
    query = select(Revocation.entry_der).where(Revocation.issuer_id == issuer_id)
    if shard is not None:
        query = query.where(Revocation.crl_shard == shard)
    if expired_before is not None:
        query = query.where(Revocation.not_valid_after >= expired_before)
    return query.order_by(Revocation.id)


def stream_entry_der(
    session: Session, query: Select[bytes], *, batch: int = ENTRY_BATCH
) -> Iterator[bytes]:
    """Run ``query`` (one ``LargeBinary`` column, e.g. :func:`crl_entry_query`) in the
    session's transaction and yield its values concatenated ``batch`` rows at a time.

    Never holds the whole result: on PostgreSQL (psycopg 3) through a server-side
    cursor in binary format (text format would ship bytea as hex, twice the bytes);
    on SQLite through the driver's cursor, which steps as it is fetched. Both skip
    SQLAlchemy's per-row result processing (a :class:`~sqlalchemy.engine.Row` per
    entry costs about as much as reading it); the statement and its parameters are
    still compiled and bound by SQLAlchemy. Other dialects: SQLAlchemy's streaming
    ``yield_per``.
    """
    connection = session.connection()
    dialect = connection.dialect
    if not uses_driver_cursor(dialect):
        result = connection.execution_options(stream_results=True, yield_per=batch).execute(query)
        for part in result.scalars().partitions():
            yield b"".join(part)
        return
    compiled = query.compile(dialect=dialect)
    params: dict[str, Any] = {}
    for name, value in compiled.construct_params().items():
        processor = compiled.binds[name].type.bind_processor(dialect)
        params[name] = processor(value) if processor is not None else value
    driver: Any = connection.connection.driver_connection
    first = itemgetter(0)
    if dialect.name == "postgresql":
        # A server-side cursor: each FETCH brings ``batch`` rows, so the client holds
        # one batch at a time by construction. (``Cursor.stream`` in chunked-rows
        # mode read 1M rows about 0.25 s faster here, one query without FETCH round
        # trips; what it buffers is up to libpq.)
        name = f"ehrca_crl_entries_{secrets.token_hex(4)}"
        with driver.cursor(name=name, binary=True) as cursor:
            cursor.itersize = batch
            cursor.execute(str(compiled), params)
            while rows := cursor.fetchmany(batch):
                yield b"".join(map(first, rows))
        return
    cursor = driver.cursor()
    try:
        cursor.execute(str(compiled), driver_parameters(compiled, params))
        while rows := cursor.fetchmany(batch):
            yield b"".join(map(first, rows))
    finally:
        cursor.close()


def _scope_filter(shard: int | None) -> object:
    return PublishedCRL.shard.is_(None) if shard is None else PublishedCRL.shard == shard


def publish_crl(
    session: Session,
    keystore: KeyStore,
    authority_id: int,
    *,
    now: dt.datetime,
    validity: dt.timedelta,
    keep_expired: dt.timedelta = ZERO,
    shard: int | None = None,
    urls: PkiUrls | None = None,
) -> PublishedCRL:
    """Sign and store the next CRL of ``authority_id`` (the full CRL, or partition
    ``shard``); commits, and keeps the newest :data:`CRL_HISTORY` of that scope.

    thisUpdate = ``now``, nextUpdate = ``now + validity`` (both whole seconds); entries
    whose certificate's notAfter + ``keep_expired`` is before thisUpdate are left out.
    The entries are listed in revocation order, each as the DER stored when it was
    revoked (``revocations.entry_der``), streamed from the database straight into the
    CRL (:func:`stream_entry_der`, :func:`revocation.crl_der.assemble_crl`): at a
    million entries, well under 2 s and about twice the CRL's size in memory.

    Returns:
        The stored :class:`PublishedCRL` (``crl_number`` one above the issuer's last).

    Raises:
        ValueError: ``shard`` below 1, a partition without ``urls`` or of the root.
        ca.keys.KeyStoreError: the CA key cannot be loaded.
    """
    if shard is not None and (shard < 1 or urls is None):
        raise ValueError("a CRL partition needs a shard number of 1 or more and the PKI URLs")
    crl_number = session.execute(
        update(CertificateAuthority)
        .where(CertificateAuthority.id == authority_id)
        .values(crl_number=CertificateAuthority.crl_number + 1)
        .returning(CertificateAuthority.crl_number)
    ).scalar_one()
    try:
        authority = session.get_one(CertificateAuthority, authority_id)
        if shard is not None and authority.role is CARole.ROOT:
            raise ValueError("the root's CRL is not partitioned")
        issuer = x509.load_der_x509_certificate(authority.certificate_der)
        key = keystore.load_key(authority.key_ref)
        this_update = now.astimezone(dt.UTC).replace(microsecond=0)
        next_update = this_update + validity
        if authority.role is CARole.ROOT:
            entries: Iterable[bytes] = ()  # revoked issuing CAs: none can be revoked yet
        else:
            entries = stream_entry_der(
                session,
                crl_entry_query(
                    authority_id, shard=shard, expired_before=this_update - keep_expired
                ),
            )
        crl_der = assemble_crl(
            issuer,
            key,
            entries,
            crl_number=crl_number,
            this_update=this_update,
            next_update=next_update,
            issuing_distribution_point=(
                partition_distribution_point(urls.crl_shard(authority.name, shard))
                if shard is not None and urls is not None
                else None
            ),
        )
        row = PublishedCRL(
            issuer_id=authority_id,
            crl_number=crl_number,
            this_update=this_update,
            next_update=next_update,
            crl_der=crl_der,
            shard=shard,
        )
        session.add(row)
        session.flush()
        old = (
            select(PublishedCRL.id)
            .where(PublishedCRL.issuer_id == authority_id, _scope_filter(shard))  # type: ignore[arg-type]
            .order_by(PublishedCRL.crl_number.desc())
            .offset(CRL_HISTORY)
        )
        stale = session.scalars(old).all()
        if stale:
            session.execute(delete(PublishedCRL).where(PublishedCRL.id.in_(stale)))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return row


def _scopes(session: Session, authority: CertificateAuthority, shards: int) -> list[int | None]:
    """The scopes of ``authority``: the full CRL, then partitions 1..n, where n is the
    larger of ``shards`` and the highest partition ever published (a partition named in
    certificates stays published after ``shards`` is lowered)."""
    if authority.role is not CARole.ISSUING:
        return [None]
    published = session.scalar(
        select(func.max(PublishedCRL.shard)).where(PublishedCRL.issuer_id == authority.id)
    )
    highest = max(shards if shards > 1 else 0, published or 0)
    return [None, *range(1, highest + 1)]


def publish_all_crls(
    session: Session,
    keystore: KeyStore,
    *,
    now: dt.datetime,
    validity: dt.timedelta,
    keep_expired: dt.timedelta = ZERO,
    shards: int = 1,
    urls: PkiUrls | None = None,
) -> list[PublishedCRL]:
    """Publish a fresh CRL for every scope of every active authority (root and issuing;
    with ``shards`` > 1 the issuing CAs' partitions too). See :func:`publish_crl`."""
    authorities = session.scalars(
        select(CertificateAuthority)
        .where(CertificateAuthority.active.is_(True))
        .order_by(CertificateAuthority.id)
    ).all()
    published = []
    for authority in authorities:
        for shard in _scopes(session, authority, shards):
            published.append(
                publish_crl(
                    session,
                    keystore,
                    authority.id,
                    now=now,
                    validity=validity,
                    keep_expired=keep_expired,
                    shard=shard,
                    urls=urls,
                )
            )
    return published


def publish_crls_with_policy(
    session: Session, keystore: KeyStore, policy: CRLPolicy, *, now: dt.datetime
) -> list[PublishedCRL]:
    """:func:`publish_all_crls` with the settings of ``policy``."""
    return publish_all_crls(
        session,
        keystore,
        now=now,
        validity=policy.validity,
        keep_expired=policy.keep_expired,
        shards=policy.shards,
        urls=policy.urls,
    )


def publish_due_crls(
    session: Session, keystore: KeyStore, policy: CRLPolicy, *, now: dt.datetime
) -> list[PublishedCRL]:
    """The scheduled re-signing (task ``crl.refresh``): publish every scope whose newest
    CRL is missing, at least half a refresh interval old, or within two refresh
    intervals of its nextUpdate. With several workers running the schedule, the first
    one re-signs and the others find nothing due, and a CRL is never older than 1.5
    refresh intervals while one worker runs (nextUpdate cannot lapse: the refresh is
    shorter than the validity, see :class:`CRLPolicy`)."""
    authorities = session.scalars(
        select(CertificateAuthority)
        .where(CertificateAuthority.active.is_(True))
        .order_by(CertificateAuthority.id)
    ).all()
    published = []
    for authority in authorities:
        for shard in _scopes(session, authority, policy.shards):
            latest = latest_crl(session, authority.id, shard=shard)
            due = (
                latest is None
                or now - latest.this_update >= policy.refresh / 2
                or latest.next_update - now <= 2 * policy.refresh
            )
            if due:
                published.append(
                    publish_crl(
                        session,
                        keystore,
                        authority.id,
                        now=now,
                        validity=policy.validity,
                        keep_expired=policy.keep_expired,
                        shard=shard,
                        urls=policy.urls,
                    )
                )
    return published


def record_manual_publication(
    session: Session, rows: Iterable[PublishedCRL], *, actor: str, now: dt.datetime
) -> None:
    """Append one ``crl.published`` audit event per CRL published by hand (API or
    ``ehrca crl publish``) and commit."""
    for row in rows:
        record_event(
            session,
            "crl.published",
            actor=actor,
            now=now,
            subject=row.issuer.name,
            details={
                "crl_number": row.crl_number,
                "shard": row.shard,
                "this_update": row.this_update.isoformat(),
                "next_update": row.next_update.isoformat(),
                "trigger": "manual",
            },
        )
    session.commit()


def latest_crl(
    session: Session, authority_id: int, *, shard: int | None = None
) -> PublishedCRL | None:
    """The newest CRL of ``authority_id`` (the full CRL, or partition ``shard``), or
    ``None`` if none was published."""
    return session.scalars(
        select(PublishedCRL)
        .where(PublishedCRL.issuer_id == authority_id, _scope_filter(shard))  # type: ignore[arg-type]
        .order_by(PublishedCRL.crl_number.desc())
        .limit(1)
    ).first()


def issuing_authority(session: Session) -> CertificateAuthority:
    """The active issuing CA (re-exported for callers that only need revocation)."""
    return get_authority(session, CARole.ISSUING)


def served_crl(session: Session, ca_name: str, *, shard: int | None = None) -> PublishedCRL | None:
    """The CRL served at CA ``ca_name``'s distribution point (the full CRL, or partition
    ``shard``), or ``None`` for an unknown CA or scope (a shard number outside 1..2**31-1
    is never looked up: the databases refuse such integers)."""
    if shard is not None and not 1 <= shard < 2**31:
        return None
    authority = authority_by_name(session, ca_name)
    if authority is None:
        return None
    return latest_crl(session, authority.id, shard=shard)
