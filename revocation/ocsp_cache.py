"""In-process memory cache of pre-signed OCSP responses (RFC 6960, RFC 5019 profile),
so a hot responder answers without the database, a thread or a signature.

What is cached
    Only what :func:`revocation.responder.answer_request` would serve from the
    ``ocsp_responses`` table anyway: the nonce-free response with a SHA-1 CertID for a
    certificate the CA issued (``good``) or revoked (``revoked``), byte for byte, while
    it has more than half its validity left (:attr:`OCSPAnswer.cacheable_until
    <revocation.responder.OCSPAnswer.cacheable_until>`). ``unknown`` answers, nonce
    answers (RFC 6960 4.4.1: they need a live signature), other CertID hashes and
    unsuccessful answers are never cached.

Keys
    An entry is stored once per certificate, under ``(issuer_id, serial_hex)``, and
    reached from two indexes, both scoped by the CA name of the URL
    (``/pki/ocsp/{ca_name}``): the exact request DER (nonce-free requests from one
    client are byte-identical, so most hits cost one dict look-up and no parsing), and
    the request's CertID ``(issuerNameHash, issuerKeyHash, serialNumber)``, which
    answers any other encoding of the same question after one parse (the response
    echoes the CertID, so it is the same response, RFC 6960 4.2.1).

Freshness and revocation (correctness before speed)
    - An entry is served only while ``thisUpdate <= now < serve_until``, where
      ``serve_until`` is the earliest of the response's own rule (more than half its
      validity left: always before nextUpdate, hence before the responder
      certificate's notAfter, which caps nextUpdate) and :data:`REVALIDATE_AFTER`
      after it was cached, so every entry is re-read from the database at least that
      often (this also picks up responses re-signed after a responder rotation).
    - :meth:`OCSPMemoryCache.follow` registers :meth:`OCSPMemoryCache.forget` as a
      listener of :class:`revocation.status.RevocationStatusCache`: a revocation
      committed by this process evicts the entry before the revoke call returns
      (``mark_revoked``); one committed by another process is evicted when this
      process's status cache learns of it (``ehrca serve`` polls every 0.5 s), within
      the 1 s visibility target of issue 6.
    - A fill races with a revocation when the database was read before the
      revocation committed but the entry is stored after it was evicted. Each fill
      therefore carries the cache's :attr:`~OCSPMemoryCache.epoch` taken *before* the
      database read; every eviction increments the epoch, and a fill whose epoch is
      no longer current is dropped (the next request reads the database again). A
      ``good`` fill for a serial the status cache knows to be revoked is dropped too.

Memory
    At most ``max_entries`` responses (default :data:`DEFAULT_MAX_ENTRIES`; measured
    about 2 KiB each with their headers and one request encoding: ~40 MiB full), and
    at most twice as many entries in each index (up to ~20 MiB more when clients send
    many encodings: only requests of at most :data:`MAX_INDEXED_REQUEST_BYTES` are
    remembered by their bytes, longer ones are parsed on every look-up); the oldest is
    dropped first (FIFO: the dict's insertion order).
    Beyond that a request reads the database, as without this cache.

Thread safety
    Look-ups are lock-free dict reads (the event loop's fast path); every mutation
    (fill, index, eviction) takes one lock, because evictions come from other
    threads (the revoking request's thread, the status poll).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from revocation.ocsp import CertID, CertStatus, OCSPRequestError, load_der_ocsp_request
from revocation.status import RevocationStatusCache

#: Default cap on cached responses (one per certificate).
DEFAULT_MAX_ENTRIES = 20_000
#: An entry is re-read from the database at least this often, whatever its validity.
REVALIDATE_AFTER = dt.timedelta(seconds=60)
#: Longest request (octets) remembered in the exact-bytes index. A plain nonce-free
#: SHA-1 request is about 75 octets; longer ones (padded with extensions, up to
#: ``revocation.ocsp.MAX_REQUEST_BYTES`` = 16 KiB) are answered through the CertID
#: index, one parse each, so that index keys stay within the memory bound.
MAX_INDEXED_REQUEST_BYTES = 512

#: ``(issuer_id, serial_hex)``: the certificate an entry answers for.
CertKey = tuple[int, str]
#: HTTP header pairs precomputed by the web layer (opaque here).
RawHeaders = tuple[tuple[bytes, bytes], ...]

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One pre-signed response held in memory.

    Attributes:
        der: the DER ``OCSPResponse`` exactly as signed and stored.
        issuer_id / serial_hex: the certificate it answers for (``certificate_authorities.id``,
            40-hex serial).
        cert_status: ``good`` or ``revoked``.
        this_update / next_update: of its SingleResponse (aware UTC).
        serve_until: the entry is not served at or after this instant (aware UTC).
        headers: HTTP validators the web layer computed once for it (``ETag``,
            ``Last-Modified``, ``Expires``), served with GET answers.
    """

    der: bytes
    issuer_id: int
    serial_hex: str
    cert_status: CertStatus
    this_update: dt.datetime
    next_update: dt.datetime
    serve_until: dt.datetime
    headers: RawHeaders = ()

    def fresh(self, now: dt.datetime) -> bool:
        """True if the entry may be served at ``now`` (``this_update <= now < serve_until``)."""
        return self.this_update <= now < self.serve_until


class OCSPMemoryCache:
    """Pre-signed OCSP responses in memory, evicted on revocation (see the module
    docstring for the rules).

    Args:
        max_entries: cap on cached responses (at least 1).
        revalidate_after: longest time an entry is served without re-reading the
            database (positive).

    Raises:
        ValueError: ``max_entries`` under 1 or ``revalidate_after`` not positive.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        revalidate_after: dt.timedelta = REVALIDATE_AFTER,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if revalidate_after <= dt.timedelta(0):
            raise ValueError("revalidate_after must be positive")
        self.max_entries = max_entries
        self.revalidate_after = revalidate_after
        self._lock = threading.Lock()
        self._epoch = 0
        self._entries: dict[CertKey, CachedResponse] = {}
        self._by_request: dict[tuple[str, bytes], CertKey] = {}
        self._by_cert_id: dict[tuple[str, bytes, bytes, int], CertKey] = {}
        self._is_revoked: Callable[[int, str], bool] | None = None

    # ------------------------------------------------------------------ wiring

    def follow(self, status: RevocationStatusCache) -> None:
        """Evict on every revocation ``status`` learns of from now on, and refuse
        ``good`` fills for serials it knows to be revoked."""
        status.add_listener(self.forget)
        self._is_revoked = status.is_revoked

    @property
    def epoch(self) -> int:
        """Incremented by every eviction; take it before reading the database and
        hand it to :meth:`put`."""
        return self._epoch

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ look-ups

    def lookup(self, ca_name: str, request_der: bytes, now: dt.datetime) -> CachedResponse | None:
        """The fresh entry answering ``request_der`` sent to ``/pki/ocsp/{ca_name}``, or
        ``None`` (then the database answers). First by exact bytes; then, for a request
        that parses as a nonce-free SHA-1 single request, by its CertID (and the bytes,
        if at most :data:`MAX_INDEXED_REQUEST_BYTES`, are remembered for next time).
        Never raises for bad input."""
        key = self._by_request.get((ca_name, request_der))
        if key is not None:
            entry = self._entries.get(key)
            if entry is not None and entry.fresh(now):
                return entry
            return None
        try:
            parsed = load_der_ocsp_request(request_der)
        except (OCSPRequestError, TypeError):
            return None
        if parsed.nonce is not None or parsed.cert_id.hash_algorithm.name != "sha1":
            return None
        key = self._by_cert_id.get(_cert_id_key(ca_name, parsed.cert_id))
        if key is None:
            return None
        entry = self._entries.get(key)
        if entry is None or not entry.fresh(now):
            return None
        if len(request_der) <= MAX_INDEXED_REQUEST_BYTES:
            with self._lock:
                _bounded_set(self._by_request, (ca_name, request_der), key, 2 * self.max_entries)
        return entry

    # ------------------------------------------------------------------ updates

    def put(
        self,
        ca_name: str,
        request_der: bytes,
        cert_id: CertID,
        entry: CachedResponse,
        *,
        epoch: int,
        now: dt.datetime,
    ) -> bool:
        """Cache ``entry`` for ``request_der`` (and its ``cert_id``) sent to ``ca_name``
        (the bytes are indexed only up to :data:`MAX_INDEXED_REQUEST_BYTES`).

        ``serve_until`` is shortened to ``now + revalidate_after``. The fill is dropped
        (returns False) when an eviction happened since ``epoch`` was taken, when the
        entry is not fresh at ``now``, when ``cert_id`` is not SHA-1, or when it says
        ``good`` for a serial the followed status cache knows to be revoked.
        """
        if cert_id.hash_algorithm.name != "sha1" or entry.cert_status not in (
            CertStatus.GOOD,
            CertStatus.REVOKED,
        ):
            return False
        serve_until = min(entry.serve_until, now + self.revalidate_after)
        if not entry.this_update <= now < serve_until:
            return False
        if serve_until != entry.serve_until:
            entry = CachedResponse(
                entry.der,
                entry.issuer_id,
                entry.serial_hex,
                entry.cert_status,
                entry.this_update,
                entry.next_update,
                serve_until,
                entry.headers,
            )
        key = (entry.issuer_id, entry.serial_hex)
        is_revoked = self._is_revoked
        with self._lock:
            if epoch != self._epoch:
                return False
            if entry.cert_status is CertStatus.GOOD and is_revoked is not None and is_revoked(*key):
                return False
            _bounded_set(self._entries, key, entry, self.max_entries)
            if len(request_der) <= MAX_INDEXED_REQUEST_BYTES:
                _bounded_set(self._by_request, (ca_name, request_der), key, 2 * self.max_entries)
            _bounded_set(
                self._by_cert_id, _cert_id_key(ca_name, cert_id), key, 2 * self.max_entries
            )
        return True

    def forget(self, issuer_id: int, serial_hex: str) -> None:
        """Evict the entry of certificate ``serial_hex`` of ``issuer_id`` (a
        :data:`revocation.status.RevocationListener`) and invalidate fills in flight."""
        with self._lock:
            self._epoch += 1
            self._entries.pop((issuer_id, serial_hex), None)

    def clear(self) -> None:
        """Drop every entry (and invalidate fills in flight)."""
        with self._lock:
            self._epoch += 1
            self._entries.clear()
            self._by_request.clear()
            self._by_cert_id.clear()


def _cert_id_key(ca_name: str, cert_id: CertID) -> tuple[str, bytes, bytes, int]:
    return (ca_name, cert_id.issuer_name_hash, cert_id.issuer_key_hash, cert_id.serial_number)


def _bounded_set(mapping: dict[_K, _V], key: _K, value: _V, cap: int) -> None:
    """``mapping[key] = value``, first dropping the oldest entries while ``mapping`` is
    full (insertion order; the caller holds the lock)."""
    if key not in mapping:
        while len(mapping) >= cap:
            del mapping[next(iter(mapping))]
    else:
        del mapping[key]  # re-insert: a refreshed entry is the newest
    mapping[key] = value
