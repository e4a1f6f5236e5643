"""The OCSP fast path: pre-signed responses served from the in-process memory cache
(``revocation.ocsp_cache``) by the pure ASGI interceptor (``api.routes.ocsp``), never
stale after a revocation, never past their freshness, and scoped by CA name."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.routes import ocsp as ocsp_routes
from api.services import Services
from api.tasks import run_tasks
from revocation.models import OCSPResponseCache
from revocation.ocsp import CertStatus, load_der_ocsp_request
from revocation.ocsp_cache import CachedResponse, OCSPMemoryCache
from revocation.responder import OCSPAnswer, answer
from revocation.service import revoke_and_publish, revoke_certificate
from revocation.status import RevocationStatusCache
from tests.conftest import START, FrozenClock
from tests.revocation.support import (
    Issued,
    issue_client,
    issuing_certificate,
    ocsp_request,
    ocsp_request_for_serial,
)

URL = "/pki/ocsp/ehrca-issuing-1"
OCSP_REQUEST = {"Content-Type": "application/ocsp-request"}


class SlowPathCalls:
    """Counts the requests that reached the database path (``responder.answer``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0

        def counting(*args: Any, **kwargs: Any) -> OCSPAnswer:
            self.count += 1
            return answer(*args, **kwargs)

        monkeypatch.setattr(ocsp_routes, "answer", counting)


@pytest.fixture
def slow_path(monkeypatch: pytest.MonkeyPatch) -> SlowPathCalls:
    return SlowPathCalls(monkeypatch)


@pytest.fixture
def target(services: Services) -> Iterator[Issued]:
    yield issue_client(services)


def _stored_der(services: Services, serial_hex: str) -> bytes:
    with services.sessions() as session:
        der: bytes = session.scalars(
            select(OCSPResponseCache.response_der).where(
                OCSPResponseCache.serial_number == serial_hex
            )
        ).one()
    return der


def _post(client: TestClient, body: bytes, url: str = URL) -> bytes:
    response = client.post(url, content=body, headers=OCSP_REQUEST)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    content: bytes = response.content
    return content


def _get_path(der: bytes, url: str = URL) -> str:
    return f"{url}/{base64.b64encode(der).decode()}"


def _status(der: bytes) -> ocsp.OCSPCertStatus:
    return ocsp.load_der_ocsp_response(der).certificate_status


# ----------------------------------------------------------------------------- hits


def test_hit_is_the_stored_response_byte_for_byte_without_the_database(
    client: TestClient, services: Services, target: Issued, slow_path: SlowPathCalls
) -> None:
    request = ocsp_request(target.certificate, issuing_certificate(services))
    first = _post(client, request)  # miss: signed, stored in the table and in memory
    assert slow_path.count == 1
    assert first == _stored_der(services, target.serial_hex)
    assert len(services.ocsp_cache) == 1
    for _ in range(3):
        assert _post(client, request) == first
        assert client.get(_get_path(request)).content == first
    assert slow_path.count == 1  # every later answer came from memory


def test_get_hit_has_the_headers_of_the_database_path(
    client: TestClient, services: Services, target: Issued, slow_path: SlowPathCalls
) -> None:
    request = ocsp_request(target.certificate, issuing_certificate(services))
    miss = client.get(_get_path(request))
    hit = client.get(_get_path(request))
    assert slow_path.count == 1
    assert hit.content == miss.content
    expected = {
        "content-type": "application/ocsp-response",
        "content-length": str(len(miss.content)),
        "cache-control": "public, max-age=300, no-transform, must-revalidate",
        "etag": miss.headers["etag"],
        "last-modified": "Sun, 29 Nov 2026 09:00:00 GMT",
        "expires": "Mon, 30 Nov 2026 09:00:00 GMT",
    }
    assert dict(hit.headers) == expected
    assert {k: miss.headers[k] for k in expected} == expected
    post = client.post(URL, content=request, headers=OCSP_REQUEST)
    assert slow_path.count == 1
    assert dict(post.headers) == {
        "content-type": "application/ocsp-response",
        "content-length": str(len(miss.content)),
        "cache-control": "no-store",
    }


def test_get_hit_max_age_never_passes_next_update(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    """An entry 100 s before its nextUpdate (possible with a short validity) is sent
    with ``max-age=100``, as the database path would (RFC 5019 6.2)."""
    der = ocsp_request_for_serial(0x1234, issuing_certificate(services))
    cert_id = load_der_ocsp_request(der).cert_id
    body = b"\x30\x03\x0a\x01\x00"  # a stand-in body: the fast path sends what it holds
    entry = CachedResponse(
        body,
        2,
        "00" * 19 + "12",
        CertStatus.GOOD,
        clock() - dt.timedelta(hours=1),
        clock() + dt.timedelta(seconds=100),
        clock() + dt.timedelta(seconds=50),
        ((b"etag", b'"x"'),),
    )
    cache = services.ocsp_cache
    assert cache.put("ehrca-issuing-1", der, cert_id, entry, epoch=cache.epoch, now=clock())
    hit = client.get(_get_path(der))
    assert hit.content == body
    assert hit.headers["cache-control"] == "public, max-age=100, no-transform, must-revalidate"
    assert hit.headers["etag"] == '"x"'
    clock.advance(seconds=50)  # serve_until reached: the database answers (unknown)
    late = client.get(_get_path(der))
    assert _status(late.content) is ocsp.OCSPCertStatus.UNKNOWN
    assert late.headers["cache-control"] == "no-store"


def test_another_encoding_of_the_same_cert_id_is_a_hit(
    client: TestClient, services: Services, target: Issued, slow_path: SlowPathCalls
) -> None:
    """A request that differs in bytes but asks the same (here with a requestorName,
    RFC 6960 4.1.1) is answered from memory after one parse (the CertID index)."""
    request = ocsp_request(target.certificate, issuing_certificate(services))
    first = _post(client, request)
    parsed = asn1_ocsp.OCSPRequest.load(request)
    parsed["tbs_request"]["requestor_name"] = asn1_x509.GeneralName(
        name="dns_name", value="clinic.example"
    )
    other = parsed.dump(force=True)
    assert other != request
    assert load_der_ocsp_request(other).cert_id == load_der_ocsp_request(request).cert_id
    assert _post(client, other) == first
    assert client.get(_get_path(other)).content == first
    assert slow_path.count == 1


# ----------------------------------------------------------------------------- revocation


def test_revocation_through_the_service_is_answered_at_once(
    client: TestClient, services: Services, target: Issued, clock: FrozenClock
) -> None:
    request = ocsp_request(target.certificate, issuing_certificate(services))
    assert _status(_post(client, request)) is ocsp.OCSPCertStatus.GOOD
    assert _status(client.get(_get_path(request)).content) is ocsp.OCSPCertStatus.GOOD
    clock.advance(minutes=5)
    with services.sessions() as session:
        revoke_and_publish(
            session,
            services.revocation,
            serial_hex=target.serial_hex,
            reason=x509.ReasonFlags.key_compromise,
            actor="sam",
            actor_role="security_officer",
            now=clock(),
        )
    for der in (_post(client, request), client.get(_get_path(request)).content):
        response = ocsp.load_der_ocsp_response(der)
        assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert response.revocation_time_utc == START + dt.timedelta(minutes=5)
        assert response.revocation_reason is x509.ReasonFlags.key_compromise
    # The revoked answer is cached in turn: the same bytes as stored.
    assert _post(client, request) == _stored_der(services, target.serial_hex)


def test_mark_revoked_evicts_the_entry(
    client: TestClient, services: Services, target: Issued, slow_path: SlowPathCalls
) -> None:
    request = ocsp_request(target.certificate, issuing_certificate(services))
    _post(client, request)
    _post(client, request)
    assert slow_path.count == 1
    services.revocation_status.mark_revoked(target.record.issuer_id, target.serial_hex)
    assert len(services.ocsp_cache) == 0
    _post(client, request)  # the database answers again
    assert slow_path.count == 2


def test_another_workers_revocation_is_answered_after_the_status_poll(
    client: TestClient, services: Services, target: Issued, clock: FrozenClock
) -> None:
    """A revocation committed elsewhere (no ``mark_revoked`` here) reaches the memory
    cache through ``RevocationStatusCache.refresh``, what ``ehrca serve`` polls."""
    request = ocsp_request(target.certificate, issuing_certificate(services))
    with services.sessions() as session:
        services.revocation_status.refresh(session)
    good = _post(client, request)
    assert _status(good) is ocsp.OCSPCertStatus.GOOD
    with services.sessions() as session:
        revoke_certificate(
            session,
            serial_hex=target.serial_hex,
            reason=x509.ReasonFlags.superseded,
            actor="sam",
            actor_role="security_officer",
            now=clock(),
        )
    # Until this process polls, the memory entry stands (the bounded window).
    assert _post(client, request) == good
    with services.sessions() as session:
        assert services.revocation_status.refresh(session) == 1
    assert _status(_post(client, request)) is ocsp.OCSPCertStatus.REVOKED


def test_a_fill_racing_a_revocation_is_dropped(services: Services, clock: FrozenClock) -> None:
    """A ``good`` read from the database before a revocation must not be cached after
    the revocation evicted: the fill carries the epoch taken before the read."""
    cache = services.ocsp_cache
    der = ocsp_request_for_serial(0x77, issuing_certificate(services))
    cert_id = load_der_ocsp_request(der).cert_id
    serial_hex = "00" * 19 + "77"
    entry = CachedResponse(
        b"good",
        2,
        serial_hex,
        CertStatus.GOOD,
        clock(),
        clock() + dt.timedelta(hours=24),
        clock() + dt.timedelta(hours=12),
    )
    epoch = cache.epoch  # the request starts, reads the database ...
    services.revocation_status.mark_revoked(2, serial_hex)  # ... a revocation commits
    assert cache.put("ehrca-issuing-1", der, cert_id, entry, epoch=epoch, now=clock()) is False
    assert cache.lookup("ehrca-issuing-1", der, clock()) is None
    # A later fill with a current epoch is still refused: the status cache knows.
    assert cache.put("ehrca-issuing-1", der, cert_id, entry, epoch=cache.epoch, now=clock()) is (
        False
    )
    assert len(cache) == 0


# ----------------------------------------------------------------------------- freshness


def test_entries_are_not_served_past_half_validity_or_next_update(
    client: TestClient, services: Services, target: Issued, clock: FrozenClock
) -> None:
    request = ocsp_request(target.certificate, issuing_certificate(services))
    first = ocsp.load_der_ocsp_response(_post(client, request))
    assert first.this_update_utc == START
    clock.advance(hours=12)  # half the 24 h validity left: re-signed, not served
    second = ocsp.load_der_ocsp_response(_post(client, request))
    assert second.this_update_utc == START + dt.timedelta(hours=12)
    assert second.next_update_utc == START + dt.timedelta(hours=36)
    clock.advance(hours=25)  # past nextUpdate of both
    third = ocsp.load_der_ocsp_response(client.get(_get_path(request)).content)
    assert third.this_update_utc == START + dt.timedelta(hours=37)


def test_entries_are_revalidated_against_the_database_every_minute(
    client: TestClient,
    services: Services,
    target: Issued,
    clock: FrozenClock,
    slow_path: SlowPathCalls,
) -> None:
    request = ocsp_request(target.certificate, issuing_certificate(services))
    first = _post(client, request)
    clock.advance(seconds=59)
    assert _post(client, request) == first
    assert slow_path.count == 1
    clock.advance(seconds=1)  # REVALIDATE_AFTER: read from the table (same response)
    assert _post(client, request) == first
    assert slow_path.count == 2
    assert _post(client, request) == first
    assert slow_path.count == 2


def test_direct_entry_past_next_update_is_not_served(clock: FrozenClock) -> None:
    cache = OCSPMemoryCache()
    entry = CachedResponse(
        b"r",
        1,
        "01" * 20,
        CertStatus.REVOKED,
        clock(),
        clock() + dt.timedelta(hours=24),
        clock() + dt.timedelta(hours=24),
    )
    assert entry.fresh(clock())
    assert not entry.fresh(clock() + dt.timedelta(hours=24))
    assert not entry.fresh(clock() - dt.timedelta(seconds=1))  # thisUpdate in the future
    assert not entry.fresh(clock() + dt.timedelta(hours=25))
    assert len(cache) == 0


# ----------------------------------------------------------------------------- fall-through


def test_nonce_requests_are_signed_live_and_echo_the_nonce(
    client: TestClient, services: Services, target: Issued, slow_path: SlowPathCalls
) -> None:
    issuer = issuing_certificate(services)
    plain = _post(client, ocsp_request(target.certificate, issuer))
    for nonce in (b"\x01" * 16, b"\x02" * 32):
        der = _post(client, ocsp_request(target.certificate, issuer, nonce=nonce))
        assert der != plain
        response = ocsp.load_der_ocsp_response(der)
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert slow_path.count == 3
    assert len(services.ocsp_cache) == 1


def test_cached_request_sent_to_another_ca_name_is_unauthorized(
    client: TestClient, services: Services, target: Issued
) -> None:
    request = ocsp_request(target.certificate, issuing_certificate(services))
    _post(client, request)
    for url in ("/pki/ocsp/nope", "/pki/ocsp/ehrca-root-1"):
        for der in (_post(client, request, url), client.get(_get_path(request, url)).content):
            status = ocsp.load_der_ocsp_response(der).response_status
            assert status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_malformed_unknown_and_odd_requests_fall_through(
    client: TestClient, services: Services, target: Issued, slow_path: SlowPathCalls
) -> None:
    issuer = issuing_certificate(services)
    _post(client, ocsp_request(target.certificate, issuer))
    for garbage in (b"", b"garbage", b"\x30\x00", b"\xff" * 20000):
        status = ocsp.load_der_ocsp_response(_post(client, garbage)).response_status
        assert status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    answer = client.get(f"{URL}/not-base64!")
    assert ocsp.load_der_ocsp_response(answer.content).response_status is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )
    unknown = ocsp_request_for_serial(0x7EADBEEF, issuer)
    for _ in range(2):  # unknown answers are never cached
        assert _status(_post(client, unknown)) is ocsp.OCSPCertStatus.UNKNOWN
    assert slow_path.count == 1 + 4 + 1 + 2
    assert len(services.ocsp_cache) == 1


def test_chunked_body_without_content_length_falls_through(
    client: TestClient, services: Services, target: Issued, slow_path: SlowPathCalls
) -> None:
    request = ocsp_request(target.certificate, issuing_certificate(services))
    first = _post(client, request)
    chunked = client.post(URL, content=iter([request[:10], request[10:]]), headers=OCSP_REQUEST)
    assert chunked.content == first
    assert slow_path.count == 2  # read by the route, answered from the table


def test_refresh_task_responses_are_what_memory_serves(
    client: TestClient, services: Services, target: Issued, clock: FrozenClock
) -> None:
    """A response pre-signed by ``ocsp.refresh`` is served from memory byte for byte
    once a request has read it from the table."""
    assert run_tasks(services, {"ocsp.refresh"}) == [
        ("ocsp.refresh", "pre-signed 2 OCSP responses")
    ]
    stored = _stored_der(services, target.serial_hex)
    clock.advance(minutes=1)
    request = ocsp_request(target.certificate, issuing_certificate(services))
    assert _post(client, request) == stored
    assert client.get(_get_path(request)).content == stored


# ----------------------------------------------------------------------------- the cache


def _entry(serial: int, clock: FrozenClock) -> CachedResponse:
    return CachedResponse(
        bytes([serial]),
        1,
        f"{serial:040x}",
        CertStatus.GOOD,
        clock(),
        clock() + dt.timedelta(hours=24),
        clock() + dt.timedelta(hours=12),
    )


def test_cache_holds_at_most_max_entries(services: Services, clock: FrozenClock) -> None:
    cache = OCSPMemoryCache(max_entries=2)
    issuer = issuing_certificate(services)
    requests = [ocsp_request_for_serial(serial, issuer) for serial in (1, 2, 3)]
    for serial, der in zip((1, 2, 3), requests, strict=True):
        cert_id = load_der_ocsp_request(der).cert_id
        assert cache.put("ca", der, cert_id, _entry(serial, clock), epoch=cache.epoch, now=clock())
    assert len(cache) == 2
    assert cache.lookup("ca", requests[0], clock()) is None  # the oldest went first
    held = [cache.lookup("ca", der, clock()) for der in requests[1:]]
    assert [(e.der, e.serial_hex) if e else None for e in held] == [
        (b"\x02", f"{2:040x}"),
        (b"\x03", f"{3:040x}"),
    ]
    assert cache.lookup("other-ca", requests[2], clock()) is None
    cache.clear()
    assert len(cache) == 0
    assert cache.lookup("ca", requests[2], clock()) is None


def test_cache_serve_until_is_capped_by_revalidation(
    services: Services, clock: FrozenClock
) -> None:
    cache = OCSPMemoryCache(revalidate_after=dt.timedelta(seconds=10))
    der = ocsp_request_for_serial(5, issuing_certificate(services))
    cert_id = load_der_ocsp_request(der).cert_id
    assert cache.put("ca", der, cert_id, _entry(5, clock), epoch=0, now=clock())
    held = cache.lookup("ca", der, clock())
    assert held is not None and held.serve_until == START + dt.timedelta(seconds=10)
    assert cache.lookup("ca", der, clock() + dt.timedelta(seconds=10)) is None


def test_cache_refuses_stale_unknown_and_other_hash_fills(
    services: Services, clock: FrozenClock
) -> None:
    cache = OCSPMemoryCache()
    status = RevocationStatusCache()
    cache.follow(status)
    issuer = issuing_certificate(services)
    der = ocsp_request_for_serial(9, issuer)
    cert_id = load_der_ocsp_request(der).cert_id
    expired = _entry(9, clock)
    later = clock() + dt.timedelta(hours=12)
    assert cache.put("ca", der, cert_id, expired, epoch=0, now=later) is False
    unknown = CachedResponse(b"u", 1, "09" * 20, CertStatus.UNKNOWN, clock(), later, later)
    assert cache.put("ca", der, cert_id, unknown, epoch=0, now=clock()) is False
    sha256 = load_der_ocsp_request(
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(b"\x00" * 32, b"\x00" * 32, 9, hashes.SHA256())
        .build()
        .public_bytes(serialization.Encoding.DER)
    ).cert_id
    assert cache.put("ca", der, sha256, _entry(9, clock), epoch=0, now=clock()) is False
    with pytest.raises(ValueError, match="max_entries must be at least 1"):
        OCSPMemoryCache(max_entries=0)
    with pytest.raises(ValueError, match="revalidate_after must be positive"):
        OCSPMemoryCache(revalidate_after=dt.timedelta(0))
    assert len(cache) == 0


def test_long_request_encodings_are_answered_but_never_kept_in_the_request_index(
    services: Services, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nonce-free SHA-1 request padded to ~15 KB (an unrecognized request extension,
    RFC 6960 4.4) is a hit through the CertID index, but its bytes are not remembered:
    40,000 such encodings would otherwise pin ~600 MiB, far past the memory bound."""
    from revocation import ocsp_cache as ocsp_cache_module
    from revocation.ocsp import MAX_REQUEST_BYTES

    cache = OCSPMemoryCache(max_entries=1)
    issuer = issuing_certificate(services)
    der = ocsp_request_for_serial(7, issuer)
    cert_id = load_der_ocsp_request(der).cert_id
    assert cache.put("ca", der, cert_id, _entry(7, clock), epoch=0, now=clock())

    def padded(tag: int) -> bytes:
        padding_value = b"\x04\x82\x3a\x98" + tag.to_bytes(4, "big") + b"x" * 14996
        return (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(
                cert_id.issuer_name_hash,
                cert_id.issuer_key_hash,
                7,
                hashes.SHA1(),  # noqa: S303 - RFC 5019 CertID
            )
            .add_extension(
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), padding_value
                ),
                critical=False,
            )
            .build()
            .public_bytes(serialization.Encoding.DER)
        )

    parses = 0
    real_parse = load_der_ocsp_request

    def counting_parse(request_der: bytes) -> Any:
        nonlocal parses
        parses += 1
        return real_parse(request_der)

    monkeypatch.setattr(ocsp_cache_module, "load_der_ocsp_request", counting_parse)
    long_request = padded(1)
    assert len(long_request) == 15103
    assert len(long_request) <= MAX_REQUEST_BYTES
    assert len(long_request) > ocsp_cache_module.MAX_INDEXED_REQUEST_BYTES
    for _ in range(3):
        held = cache.lookup("ca", long_request, clock())
        assert held is not None and held.der == b"\x07"
    assert parses == 3  # parsed every time: never indexed by its bytes
    short = asn1_ocsp.OCSPRequest.load(der)
    short["tbs_request"]["requestor_name"] = asn1_x509.GeneralName(
        name="dns_name", value="clinic.example"
    )
    other = short.dump(force=True)
    assert len(other) <= ocsp_cache_module.MAX_INDEXED_REQUEST_BYTES
    for _ in range(3):
        held = cache.lookup("ca", other, clock())
        assert held is not None and held.der == b"\x07"
    assert parses == 4  # a short encoding is parsed once, then found by its bytes
    # A long request filled through the database path is not indexed by its bytes either.
    filled = OCSPMemoryCache(max_entries=1)
    assert filled.put("ca", padded(2), cert_id, _entry(7, clock), epoch=0, now=clock())
    assert filled.lookup("ca", padded(2), clock()) is not None
    assert parses == 5
