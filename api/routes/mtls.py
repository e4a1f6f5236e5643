"""The mTLS listener's routes. Every request is checked against revocation status,
because a CRL loaded in the TLS layer does not cover connections opened before a
revocation (DESIGN.md, mTLS on uvicorn).

Two dependencies check the presented certificate:

* :func:`verified_client` (``VerifiedClient``) loads the certificate's row into the
  request's session, for routes that work with it (renewal). Two queries and a
  thread-pool hop per request.
* :func:`verified_identity` (``VerifiedIdentity``) serves read-only routes such as
  ``/mtls/whoami`` from memory: see :class:`ClientIdentityCache` for what is cached
  and why a revocation still refuses the very next request.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
from dataclasses import dataclass
from typing import Annotated

from cryptography import x509
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.deps import ServicesDep, SessionDep
from api.services import Services
from api.tls import client_certificate_from_scope
from ca.errors import DomainError, ErrorCategory
from ca.models import CertificateRecord, CertificateStatus
from registration.service import find_service_location
from revocation.queries import resolve_presented

router = APIRouter(prefix="/mtls", tags=["mtls"])

#: Certificates whose identity :class:`ClientIdentityCache` keeps (least recently used
#: out first); one entry is a few hundred bytes.
IDENTITY_CACHE_SIZE = 4096


class ClientCertificateRefused(DomainError):
    """The presented certificate is missing, unknown, revoked or expired."""

    code = "client_certificate_refused"
    category = ErrorCategory.FORBIDDEN


class WhoAmI(BaseModel):
    """Who the presented secure connection certificate belongs to."""

    provider_reference: str | None
    service_location: int | None
    service_location_name: str | None
    serial_number: str
    subject: str
    not_valid_after: str


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """What the database said about an issued certificate, none of which can change.

    ``certificate_id`` is the row's primary key; ``issuer_id`` and ``serial_hex`` are
    the key of :meth:`revocation.status.RevocationStatusCache.is_revoked`; the
    validity bounds are the certificate's (UTC); ``whoami`` is the ``/mtls/whoami``
    answer. The status is deliberately not part of it.
    """

    certificate_id: int
    issuer_id: int
    serial_hex: str
    not_valid_before: dt.datetime
    not_valid_after: dt.datetime
    whoami: WhoAmI


class ClientIdentityCache:
    """Bounded LRU of :class:`ClientIdentity` keyed by the presented certificate.

    The key is the certificate object that :func:`api.tls.client_certificate_from_scope`
    returns, itself cached by PEM, so every request on a connection (and every
    connection with the same certificate) finds it without parsing or a query.

    Only immutable facts are cached: the issuer (by authorityKeyIdentifier), the row
    whose stored DER equals the presented one byte for byte, the validity period and
    the service location's number and name (fixed once issued; the row keeps the
    location's id). The status is checked on every request (:func:`verified_identity`).
    A certificate the database does not know (yet) or holds as revoked is never
    cached, so it is looked up again on its next request. Thread-safe.
    """

    def __init__(self, maxsize: int = IDENTITY_CACHE_SIZE) -> None:
        """Args:
        maxsize: entries kept (>= 1).

        Raises:
            ValueError: ``maxsize`` is below 1.
        """
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._entries: collections.OrderedDict[x509.Certificate, ClientIdentity] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, certificate: x509.Certificate) -> ClientIdentity | None:
        """The cached identity of ``certificate``, or ``None``."""
        with self._lock:
            identity = self._entries.get(certificate)
            if identity is not None:
                self._entries.move_to_end(certificate)
            return identity

    def put(self, certificate: x509.Certificate, identity: ClientIdentity) -> None:
        """Remember ``identity`` for ``certificate``, evicting the least recently used."""
        with self._lock:
            self._entries[certificate] = identity
            self._entries.move_to_end(certificate)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)


def _presented_certificate(request: Request) -> x509.Certificate:
    """The verified client certificate of ``request`` (ASGI TLS extension).

    Raises:
        ClientCertificateRefused: ``client_certificate_unknown`` (not a certificate) or
            ``client_certificate_missing``.
    """
    try:
        certificate = client_certificate_from_scope(request.scope)
    except ValueError as exc:  # the TLS layer handed over something that is not a certificate
        raise ClientCertificateRefused(
            "the client certificate cannot be parsed", code="client_certificate_unknown"
        ) from exc
    if certificate is None:
        raise ClientCertificateRefused(
            "a client certificate is required", code="client_certificate_missing"
        )
    return certificate


def _refuse_revoked() -> ClientCertificateRefused:
    return ClientCertificateRefused(
        "the client certificate has been revoked", code="client_certificate_revoked"
    )


def _refuse_expired() -> ClientCertificateRefused:
    return ClientCertificateRefused(
        "the client certificate is outside its validity period",
        code="client_certificate_expired",
    )


def verified_client(
    request: Request, session: SessionDep, services: ServicesDep
) -> CertificateRecord:
    """The stored record of the certificate presented on this connection, loaded into
    the request's session (two queries: the issuer and the row).

    Raises:
        ClientCertificateRefused: code ``client_certificate_missing``,
            ``client_certificate_unknown`` (not issued by this CA's database),
            ``client_certificate_revoked`` or ``client_certificate_expired``.
    """
    certificate = _presented_certificate(request)
    presented = resolve_presented(session, certificate)
    if presented.issuer_id is not None and services.revocation_status.is_revoked(
        presented.issuer_id, presented.serial_hex
    ):
        raise _refuse_revoked()
    record = presented.record
    if record is None:
        raise ClientCertificateRefused(
            "the client certificate was not issued by this CA", code="client_certificate_unknown"
        )
    if record.status is CertificateStatus.REVOKED:
        raise _refuse_revoked()
    now = services.clock()
    if not record.not_valid_before <= now <= record.not_valid_after:
        raise _refuse_expired()
    return record


VerifiedClient = Annotated[CertificateRecord, Depends(verified_client)]


def _load_identity(services: Services, certificate: x509.Certificate) -> ClientIdentity:
    """Resolve ``certificate`` against the database (blocking: run in a worker thread).

    Raises:
        ClientCertificateRefused: ``client_certificate_unknown`` or
            ``client_certificate_revoked`` (the row says so).
    """
    with services.sessions() as session:
        presented = resolve_presented(session, certificate)
        record = presented.record
        if record is None or presented.issuer_id is None:
            raise ClientCertificateRefused(
                "the client certificate was not issued by this CA",
                code="client_certificate_unknown",
            )
        if record.status is CertificateStatus.REVOKED:
            raise _refuse_revoked()
        location = find_service_location(session, record.service_location_id)
        return ClientIdentity(
            certificate_id=record.id,
            issuer_id=presented.issuer_id,
            serial_hex=presented.serial_hex,
            not_valid_before=record.not_valid_before,
            not_valid_after=record.not_valid_after,
            whoami=WhoAmI(
                provider_reference=record.provider_reference,
                service_location=location.number if location else None,
                service_location_name=location.name_en if location else None,
                serial_number=record.serial_number,
                subject=record.subject,
                not_valid_after=record.not_valid_after.isoformat(),
            ),
        )


def _row_is_revoked(services: Services, certificate_id: int) -> bool:
    """Whether the certificate's row is no longer ``issued`` (revoked; a row gone
    fails closed too). Blocking: one primary-key query."""
    with services.sessions() as session:
        status = session.scalar(
            select(CertificateRecord.status).where(CertificateRecord.id == certificate_id)
        )
    return status is not CertificateStatus.ISSUED


def identity_cache(request: Request) -> ClientIdentityCache:
    """The app's :class:`ClientIdentityCache` (``app.state.mtls_identities``, made on
    first use; one per app, so per :class:`~api.services.Services` and database)."""
    state = request.app.state
    cache: ClientIdentityCache | None = getattr(state, "mtls_identities", None)
    if cache is None:
        cache = state.mtls_identities = ClientIdentityCache()
    return cache


async def verified_identity(request: Request) -> ClientIdentity:
    """The identity of the certificate presented on this connection, checked now.

    Per request, in the event loop: the certificate comes from the connection's ASGI
    TLS extension (parsed once per certificate, :mod:`api.tls`), its identity from
    :class:`ClientIdentityCache` (database only on a miss, in a worker thread), then
    revocation and the validity period (app clock) are checked.

    Revocation: ``services.revocation_status`` (in memory) is always consulted. The
    database row is re-read (one primary-key query, in a worker thread) only while
    ``services.revocation_status_current()`` is false. Why the row can be skipped
    when it is true: a certificate's status becomes ``revoked`` only in
    :func:`revocation.service.revoke_certificate`, in the same transaction as its
    ``revocations`` row, and that row reaches every worker's status cache (a) in
    the revoking worker right after the commit (``mark_revoked``), (b) in sibling
    workers and after a CLI revocation (``ehrca tasks run``) within milliseconds
    through :mod:`api.notify`, and (c) otherwise (a lost datagram, another host) by
    the poll of :class:`api.server.ListenerSync` within ``EHRCA_STATUS_POLL_SECONDS``.
    ``revocation_status_current()`` is true only while that poll keeps succeeding
    (:meth:`api.server.ListenerSync.is_current`); when it stops (the database is
    unreachable from this worker, the sync is not running as in a bare
    :func:`api.app.create_mtls_app`) every request reads the row again, as before,
    so a revoked certificate is refused on an open keep-alive connection either way.

    Raises:
        ClientCertificateRefused: ``client_certificate_missing``,
            ``client_certificate_unknown``, ``client_certificate_revoked`` or
            ``client_certificate_expired``.
    """
    services: Services = request.app.state.services  # not ServicesDep: a sync dependency
    certificate = _presented_certificate(request)  # costs a thread-pool hop per request
    cache = identity_cache(request)
    identity = cache.get(certificate)
    if identity is None:
        identity = await run_in_threadpool(_load_identity, services, certificate)
        cache.put(certificate, identity)
    elif not services.revocation_status_current() and await run_in_threadpool(
        _row_is_revoked, services, identity.certificate_id
    ):
        raise _refuse_revoked()
    if services.revocation_status.is_revoked(identity.issuer_id, identity.serial_hex):
        raise _refuse_revoked()
    now = services.clock()
    if not identity.not_valid_before <= now <= identity.not_valid_after:
        raise _refuse_expired()
    return identity


VerifiedIdentity = Annotated[ClientIdentity, Depends(verified_identity)]


@router.get("/whoami")
async def whoami(identity: VerifiedIdentity) -> WhoAmI:
    """The provider reference, service location, serial and subject of the presented
    certificate."""
    return identity.whoami
