"""Hostile and careless clients against the OCSP fast path (``api.routes.ocsp``:
``OCSPFastPathApp`` answers memory-cache hits before FastAPI's middleware): every
answer is a well-formed OCSP response, or a problem+json 4xx for HTTP misuse (405,
413, 404), never a 500 and never a hang, whether the cache is warm or not."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient

from api.services import Services
from tests.revocation.support import Issued, issue_client, issuing_certificate, ocsp_request

NAME = "ehrca-issuing-1"
URL = f"/pki/ocsp/{NAME}"
OCSP_REQUEST = {"Content-Type": "application/ocsp-request"}


@pytest.fixture
def target(services: Services) -> Iterator[Issued]:
    yield issue_client(services)


@pytest.fixture
def warm(client: TestClient, services: Services, target: Issued) -> bytes:
    """The SHA-1 request of ``target``, already answered once (so cached in memory)."""
    request = ocsp_request(target.certificate, issuing_certificate(services))
    assert _answer(client.post(URL, content=request, headers=OCSP_REQUEST)) == (
        ocsp.OCSPResponseStatus.SUCCESSFUL
    )
    assert len(services.ocsp_cache) == 1
    return request


def _answer(response: httpx.Response) -> ocsp.OCSPResponseStatus:
    """The OCSP responseStatus of a 200 ``application/ocsp-response`` answer."""
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    parsed = ocsp.load_der_ocsp_response(response.content)
    status: ocsp.OCSPResponseStatus = parsed.response_status
    return status


def _problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert json.loads(response.content)["code"] == code


def test_bodies_over_the_limit_are_413_with_or_without_content_length(
    client: TestClient, warm: bytes
) -> None:
    """The fast path reads a body only when Content-Length is at most 16 KiB; anything
    larger reaches ``BodySizeLimit`` (256 KiB for the PKI paths) unread."""
    big = b"\x30" + b"A" * 300_000
    _problem(client.post(URL, content=big, headers=OCSP_REQUEST), 413, "request_too_large")
    chunks = iter([warm, b"A" * 300_000])  # no Content-Length: chunked
    _problem(client.post(URL, content=chunks, headers=OCSP_REQUEST), 413, "request_too_large")
    # Over the responder's 16 KiB but under the HTTP limit: the route says malformed.
    assert _answer(client.post(URL, content=b"A" * 20_000, headers=OCSP_REQUEST)) == (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )
    # A cached request followed by trailing bytes is another (malformed) request.
    assert _answer(client.post(URL, content=warm + b"\x00", headers=OCSP_REQUEST)) == (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405_problems(client: TestClient, warm: bytes, method: str) -> None:
    for url in (URL, f"{URL}/{base64.b64encode(warm).decode()}"):
        response = client.request(method, url, content=warm, headers=OCSP_REQUEST)
        _problem(response, 405, "method_not_allowed")


def test_head_is_a_405_without_body(client: TestClient, warm: bytes) -> None:
    response = client.head(f"{URL}/{base64.b64encode(warm).decode()}")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.content == b""


def test_get_encodings_and_path_tricks(client: TestClient, warm: bytes) -> None:
    encoded = base64.b64encode(warm).decode()
    stored = client.get(f"{URL}/{encoded}").content
    same = [
        f"{URL}/{base64.urlsafe_b64encode(warm).decode().rstrip('=')}",
        f"{URL}/{encoded.replace('/', '%2F').replace('+', '%2B').replace('=', '%3D')}",
        f"{URL}%2F{encoded}",  # the ASGI path is percent-decoded, as routing sees it
        f"{URL}/{encoded}?x=1",
    ]
    for url in same:
        response = client.get(url)
        assert response.status_code == 200 and response.content == stored, url
    malformed = [
        f"{URL}/{encoded[:-7]}",  # truncated base64
        f"{URL}/!!!!",
        f"{URL}/",
        f"{URL}/{'A' * 8000}",
        f"{URL}/%C3%A9",
    ]
    for url in malformed:
        assert _answer(client.get(url)) == ocsp.OCSPResponseStatus.MALFORMED_REQUEST, url
    unauthorized = [
        f"/pki/ocsp/nosuchca/{encoded}",
        f"/pki/ocsp/{'c' * 4000}/{encoded}",
        f"/pki/ocsp/{NAME.upper()}/{encoded}",
    ]
    for url in unauthorized:
        assert _answer(client.get(url)) == ocsp.OCSPResponseStatus.UNAUTHORIZED, url
    _problem(client.get(f"/pki/ocsp//{NAME}/{encoded}"), 404, "not_found")
    _problem(client.post("/pki/ocsp/", content=warm, headers=OCSP_REQUEST), 404, "not_found")
    _problem(client.post(f"{URL}/x", content=warm, headers=OCSP_REQUEST), 405, "method_not_allowed")


def test_nonces_sha256_and_request_lists_are_never_served_from_memory(
    client: TestClient, services: Services, target: Issued, warm: bytes
) -> None:
    issuer = issuing_certificate(services)
    for size, expected in ((1, 1), (32, 32), (33, None), (2000, None)):
        der = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(target.certificate, issuer, hashes.SHA1())  # noqa: S303
            .add_extension(x509.OCSPNonce(b"N" * size), critical=False)
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        response = client.post(URL, content=der, headers=OCSP_REQUEST)
        if expected is None:  # RFC 8954 2.1: 1 to 32 octets
            assert _answer(response) == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            continue
        assert _answer(response) == ocsp.OCSPResponseStatus.SUCCESSFUL
        parsed = ocsp.load_der_ocsp_response(response.content)
        nonce = parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        assert nonce == b"N" * expected
        assert response.headers["cache-control"] == "no-store"
    sha256 = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(target.certificate, issuer, hashes.SHA256())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    for _ in range(2):
        response = client.post(URL, content=sha256, headers=OCSP_REQUEST)
        assert _answer(response) == ocsp.OCSPResponseStatus.SUCCESSFUL
        parsed = ocsp.load_der_ocsp_response(response.content)
        assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert parsed.hash_algorithm.name == "sha256"
    two = asn1_ocsp.OCSPRequest.load(warm)
    two["tbs_request"]["request_list"].append(
        asn1_ocsp.OCSPRequest.load(warm)["tbs_request"]["request_list"][0]
    )
    both = two.dump(force=True)
    assert _answer(client.post(URL, content=both, headers=OCSP_REQUEST)) == (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )
    assert _answer(client.get(f"{URL}/{base64.b64encode(both).decode()}")) == (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )
    assert len(services.ocsp_cache) == 1  # only the plain SHA-1 answer is held
