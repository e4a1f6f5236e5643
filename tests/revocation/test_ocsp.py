"""The OCSP responder (RFC 6960): request parsing, statuses, nonces, the delegated
responder certificate and its renewal, pre-signed responses replaced on revocation,
GET and POST over the API, and ``openssl ocsp`` against a real uvicorn server."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.services import Services
from api.tasks import run_tasks
from ca.audit import AuditEvent
from ca.service import latest_server_certificate
from revocation.models import OCSPResponder, OCSPResponseCache
from revocation.ocsp import (
    MAX_NONCE_BYTES,
    OCSPRequestError,
    load_der_ocsp_request,
)
from revocation.responder import answer
from revocation.service import revoke_and_publish
from tests.conftest import START, FrozenClock
from tests.helpers import assert_lint_clean
from tests.revocation.support import (
    TIMEOUT,
    issue_client,
    issuing_certificate,
    ocsp_request,
    ocsp_request_for_serial,
    root_certificate,
    running_http,
    write_pems,
)

URL = "/pki/ocsp/ehrca-issuing-1"
OCSP_REQUEST = {"Content-Type": "application/ocsp-request"}


def _post(client: TestClient, body: bytes, url: str = URL) -> ocsp.OCSPResponse:
    response = client.post(url, content=body, headers=OCSP_REQUEST)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.content)


def _revoke(services: Services, serial_hex: str, reason: x509.ReasonFlags) -> None:
    with services.sessions() as session:
        revoke_and_publish(
            session,
            services.revocation,
            serial_hex=serial_hex,
            reason=reason,
            actor="sam",
            actor_role="security_officer",
            now=services.clock(),
        )


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"not an ocsp request", b"\x30\x03\x02\x01\x01", b"\x30" * 5000],
    ids=["empty", "nul", "text", "wrong-sequence", "huge"],
)
def test_garbage_is_not_a_request(garbage: bytes) -> None:
    with pytest.raises(OCSPRequestError):
        load_der_ocsp_request(garbage)


def test_request_with_two_certificates_is_malformed(services: Services) -> None:
    issuer = issuing_certificate(services)
    single = ocsp_request_for_serial(0x1234, issuer)
    # Splice a second Request into the requestList (cryptography builds one only).
    from asn1crypto import ocsp as asn1_ocsp

    parsed = asn1_ocsp.OCSPRequest.load(single)
    request_list = parsed["tbs_request"]["request_list"]
    request_list.append(request_list[0].copy())
    with pytest.raises(OCSPRequestError, match="exactly one Request"):
        load_der_ocsp_request(parsed.dump(force=True))


@pytest.mark.parametrize("length", [1, 16, MAX_NONCE_BYTES])
def test_nonce_up_to_32_octets_is_read(services: Services, length: int) -> None:
    der = ocsp_request_for_serial(7, issuing_certificate(services), nonce=b"\xab" * length)
    assert load_der_ocsp_request(der).nonce == b"\xab" * length


def test_nonce_over_32_octets_is_malformed(services: Services) -> None:
    der = ocsp_request_for_serial(7, issuing_certificate(services), nonce=b"\xab" * 33)
    with pytest.raises(OCSPRequestError, match="nonce must be 1 to 32 octets"):
        load_der_ocsp_request(der)


# ----------------------------------------------------------------------------- statuses


def test_good_revoked_unknown_over_post(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    issuer = issuing_certificate(services)
    good = issue_client(services, number=1)
    revoked = issue_client(services, number=2)
    clock.advance(minutes=30)
    with services.sessions() as session:
        revoke_and_publish(
            session,
            services.revocation,
            serial_hex=revoked.serial_hex,
            reason=x509.ReasonFlags.key_compromise,
            invalidity_date=START,
            actor="sam",
            actor_role="security_officer",
            now=clock(),
        )
    clock.advance(minutes=30)
    now = START + dt.timedelta(hours=1)

    response = _post(client, ocsp_request(good.certificate, issuer))
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == good.certificate.serial_number
    assert response.this_update_utc == now
    assert response.next_update_utc == now + dt.timedelta(hours=24)
    assert response.revocation_time_utc is None

    response = _post(client, ocsp_request(revoked.certificate, issuer))
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_time_utc == START + dt.timedelta(minutes=30)
    assert response.revocation_reason is x509.ReasonFlags.key_compromise

    never = ocsp_request_for_serial(0x7EADBEEF_00000000_00000001, issuer)
    response = _post(client, never)
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert response.next_update_utc is None
    assert response.this_update_utc == now


def test_response_is_signed_by_a_delegated_responder(
    client: TestClient, services: Services
) -> None:
    issuer = issuing_certificate(services)
    good = issue_client(services)
    response = _post(client, ocsp_request(good.certificate, issuer))
    assert len(response.certificates) == 1
    responder = response.certificates[0]
    # Issued directly by the CA, ocspSigning, id-pkix-ocsp-nocheck, 7 days.
    assert responder.issuer == issuer.subject
    responder.verify_directly_issued_by(issuer)
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert responder.extensions.get_extension_for_oid(ExtensionOID.OCSP_NO_CHECK)
    assert responder.not_valid_before_utc == START
    assert responder.not_valid_after_utc == START + dt.timedelta(days=7, seconds=-1)
    assert response.responder_key_hash == (
        x509.SubjectKeyIdentifier.from_public_key(responder.public_key()).digest
    )
    public_key = responder.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    assert_lint_clean(responder.public_bytes(serialization.Encoding.DER))


def test_the_mtls_server_certificate_points_at_the_responder(services: Services) -> None:
    with services.sessions() as session:
        record = latest_server_certificate(session)
        assert record.certificate_der is not None
        server = x509.load_der_x509_certificate(record.certificate_der)
    aia = server.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in aia] == [
        "http://127.0.0.1:8000/pki/ocsp/ehrca-issuing-1",
        "http://127.0.0.1:8000/pki/ca/ehrca-issuing-1.crt",
    ]


def test_unauthorized_for_another_issuer_and_malformed_for_garbage(
    client: TestClient, services: Services
) -> None:
    good = issue_client(services)
    # The root is not the issuer of the client certificate: unauthorized.
    response = _post(client, ocsp_request(good.certificate, root_certificate(services)))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    # The root's URL runs no responder.
    response = _post(
        client,
        ocsp_request(good.certificate, issuing_certificate(services)),
        "/pki/ocsp/ehrca-root-1",
    )
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    # No such CA.
    response = _post(
        client, ocsp_request(good.certificate, issuing_certificate(services)), "/pki/ocsp/nope"
    )
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    for garbage in (b"", b"garbage", b"\x30\x00", b"\xff" * 20000):
        response = _post(client, garbage)
        assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    for path in ("%%%", "AAAA", "not-base64!", "MAA="):
        answer_ = client.get(f"{URL}/{path}")
        assert answer_.status_code == 200
        assert ocsp.load_der_ocsp_response(answer_.content).response_status is (
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        )
        assert answer_.headers["cache-control"] == "no-store"


def test_nonce_is_echoed_and_long_nonce_refused(client: TestClient, services: Services) -> None:
    issuer = issuing_certificate(services)
    good = issue_client(services)
    nonce = bytes(range(32))
    response = _post(client, ocsp_request(good.certificate, issuer, nonce=nonce))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    response = _post(client, ocsp_request(good.certificate, issuer, nonce=bytes(33)))
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # Without nonce: no nonce extension.
    response = _post(client, ocsp_request(good.certificate, issuer))
    assert len(response.extensions) == 0
    # A GET with a nonce is answered fresh and never cacheable.
    encoded = base64.b64encode(ocsp_request(good.certificate, issuer, nonce=b"n" * 8)).decode()
    with_nonce = client.get(f"{URL}/{encoded}")
    assert with_nonce.headers["cache-control"] == "no-store"
    parsed = ocsp.load_der_ocsp_response(with_nonce.content)
    assert parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 8


def test_sha256_cert_id_is_answered_with_the_same_cert_id(
    client: TestClient, services: Services
) -> None:
    issuer = issuing_certificate(services)
    good = issue_client(services)
    request = ocsp_request(good.certificate, issuer, algorithm=hashes.SHA256())
    for _ in range(2):  # the second time too: SHA-256 answers are never served from store
        response = _post(client, request)
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert isinstance(response.hash_algorithm, hashes.SHA256)
        assert response.issuer_key_hash == ocsp.load_der_ocsp_request(request).issuer_key_hash


def test_get_base64_with_cache_headers(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    issuer = issuing_certificate(services)
    good = issue_client(services)
    der = ocsp_request(good.certificate, issuer)
    encoded = base64.b64encode(der).decode()
    response = client.get(f"{URL}/{encoded}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.headers["cache-control"] == "public, max-age=300, no-transform, must-revalidate"
    assert response.headers["last-modified"] == "Sun, 29 Nov 2026 09:00:00 GMT"
    assert response.headers["expires"] == "Mon, 30 Nov 2026 09:00:00 GMT"
    # URL-encoded and URL-safe forms, without padding, give the same stored answer.
    for variant in (
        encoded.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D"),
        base64.urlsafe_b64encode(der).decode().rstrip("="),
    ):
        again = client.get(f"{URL}/{variant}")
        assert again.content == response.content
        assert again.headers["etag"] == response.headers["etag"]
    # Past half its validity the stored response is re-signed, not served.
    clock.advance(hours=12)
    late = client.get(f"{URL}/{encoded}")
    assert ocsp.load_der_ocsp_response(late.content).this_update_utc == clock()
    assert late.headers["last-modified"] == "Sun, 29 Nov 2026 21:00:00 GMT"


def test_pre_signed_response_is_served_and_replaced_on_revocation(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    issuer = issuing_certificate(services)
    target = issue_client(services)
    request = ocsp_request(target.certificate, issuer)
    assert run_tasks(services, {"ocsp.refresh"}) == [
        ("ocsp.refresh", "pre-signed 2 OCSP responses")
    ]
    with services.sessions() as session:
        stored = session.scalars(
            select(OCSPResponseCache).where(OCSPResponseCache.serial_number == target.serial_hex)
        ).one()
        assert stored.cert_status == "good"
        assert stored.this_update == START
    clock.advance(minutes=5)
    first = client.post(URL, content=request, headers=OCSP_REQUEST)
    assert first.content == stored.response_der  # served from the store, not re-signed
    _revoke(services, target.serial_hex, x509.ReasonFlags.superseded)
    with services.sessions() as session:
        replaced = session.scalars(
            select(OCSPResponseCache).where(OCSPResponseCache.serial_number == target.serial_hex)
        ).one()
        assert replaced.cert_status == "revoked"
        assert replaced.this_update == START + dt.timedelta(minutes=5)
    second = _post(client, request)
    assert second.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert second.revocation_reason is x509.ReasonFlags.superseded
    assert second.this_update_utc == START + dt.timedelta(minutes=5)


def test_stale_good_response_is_never_served(services: Services, clock: FrozenClock) -> None:
    """A stored ``good`` response that disagrees with ``revocations`` (a worker that
    signed it while another revoked) is not served: the answer comes from the table."""
    issuer = issuing_certificate(services)
    target = issue_client(services)
    request = ocsp_request(target.certificate, issuer)
    with services.sessions() as session:
        good = answer(
            session,
            services.keystore,
            services.ocsp_policy,
            "ehrca-issuing-1",
            request,
            now=clock(),
        )
        assert good.cert_status is not None and good.cert_status.value == "good"
        from revocation.service import revoke_certificate

        revoke_certificate(
            session,
            serial_hex=target.serial_hex,
            reason=x509.ReasonFlags.key_compromise,
            actor="sam",
            actor_role="security_officer",
            now=clock(),
        )
        # Put the old good response back, as a racing worker could.
        session.add(
            OCSPResponseCache(
                issuer_id=target.record.issuer_id,
                serial_number=target.serial_hex,
                cert_status="good",
                responder_id=session.scalars(select(OCSPResponder.id)).one(),
                this_update=clock(),
                next_update=clock() + dt.timedelta(hours=24),
                response_der=good.der,
            )
        )
        session.commit()
        again = answer(
            session,
            services.keystore,
            services.ocsp_policy,
            "ehrca-issuing-1",
            request,
            now=clock(),
        )
    assert again.from_cache is False
    assert ocsp.load_der_ocsp_response(again.der).certificate_status is ocsp.OCSPCertStatus.REVOKED


def test_responder_is_renewed_before_expiry_with_an_audit_event(
    services: Services, clock: FrozenClock
) -> None:
    assert run_tasks(services, {"ocsp.responder"}) == [
        ("ocsp.responder", "new responders: ehrca-issuing-1")
    ]
    assert run_tasks(services, {"ocsp.responder"}) == [("ocsp.responder", "responders current")]
    clock.advance(days=3, hours=12)  # exactly half of 7 days left: renewed
    assert run_tasks(services, {"ocsp.responder"}) == [
        ("ocsp.responder", "new responders: ehrca-issuing-1")
    ]
    with services.sessions() as session:
        rows = session.scalars(select(OCSPResponder).order_by(OCSPResponder.id)).all()
        assert [r.not_valid_after for r in rows] == [
            START + dt.timedelta(days=7, seconds=-1),
            START + dt.timedelta(days=10, hours=12, seconds=-1),
        ]
        assert rows[0].key_ref != rows[1].key_ref
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.event_type == "ocsp.responder_key_created")
            .order_by(AuditEvent.seq)
        ).all()
        assert [(e.actor, e.subject) for e in events] == [
            ("system", "ehrca-issuing-1"),
            ("system", "ehrca-issuing-1"),
        ]
        assert '"replaces":null' in events[0].details
        assert '"key_ref":"file:ocsp-ehrca-issuing-1-20261129T090000Z-' in events[0].details
        assert "BEGIN" not in events[0].details
        # Its key is in the key store, encrypted (PKCS#8), never in the database.
        key_file = services.settings.keys_dir / rows[1].key_ref.removeprefix("file:")
        assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_responses_never_outlive_the_responder(services: Services, clock: FrozenClock) -> None:
    """nextUpdate is capped by the responder certificate's notAfter."""
    issuer = issuing_certificate(services)
    good = issue_client(services)
    policy = dataclasses.replace(services.ocsp_policy, response_validity=dt.timedelta(days=30))
    with services.sessions() as session:
        result = answer(
            session,
            services.keystore,
            policy,
            "ehrca-issuing-1",
            ocsp_request(good.certificate, issuer),
            now=clock(),
        )
    parsed = ocsp.load_der_ocsp_response(result.der)
    assert parsed.this_update_utc == START
    assert parsed.next_update_utc == START + dt.timedelta(days=7, seconds=-1)
    assert parsed.next_update_utc == parsed.certificates[0].not_valid_after_utc


# ----------------------------------------------------------------------------- interop


#: OpenSSL checks the response and certificate times against the real clock, so the
#: interop test overrides the ``clock`` fixture with the real time (a minute back).
REAL_TIME = FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1))


@pytest.mark.interop
@pytest.mark.parametrize("clock", [REAL_TIME], ids=["real-time"])
def test_openssl_ocsp_against_a_real_server(
    services: Services, tmp_path: Path, clock: FrozenClock
) -> None:
    """``openssl ocsp`` verifies the response chain (responder → issuing CA → root) and
    reads good, revoked (with reason) and unknown from a uvicorn server on 127.0.0.1."""
    issuer = issuing_certificate(services)
    good = issue_client(services, number=1)
    revoked = issue_client(services, number=2)
    _revoke(services, revoked.serial_hex, x509.ReasonFlags.key_compromise)
    paths = write_pems(
        tmp_path,
        root=root_certificate(services),
        issuing=issuer,
        good=good.certificate,
        revoked=revoked.certificate,
    )
    with running_http(services) as port:
        url = f"http://127.0.0.1:{port}/pki/ocsp/ehrca-issuing-1"

        def run(*target: str) -> str:
            done = subprocess.run(
                [
                    "openssl",
                    "ocsp",
                    "-issuer",
                    str(paths["issuing"]),
                    *target,
                    "-url",
                    url,
                    "-CAfile",
                    str(paths["root"]),
                    "-resp_text",
                    "-timeout",
                    "5",
                ],
                capture_output=True,
                text=True,
                timeout=TIMEOUT * 2,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert "Response verify OK" in done.stderr, done.stderr
            return done.stdout

        out = run("-cert", str(paths["good"]))
        assert f"{paths['good']}: good" in out
        assert "Cert Status: good" in out
        out = run("-cert", str(paths["revoked"]))
        assert f"{paths['revoked']}: revoked" in out
        assert "Reason: keyCompromise" in out
        out = run("-serial", "0x1234567890abcdef1234")
        assert "0x1234567890abcdef1234: unknown" in out
        assert "Cert Status: unknown" in out
        # A nonce (openssl sends 16 octets by default) is echoed and checked.
        out = run("-cert", str(paths["good"]), "-nonce")
        assert "WARNING: no nonce in response" not in out
        assert "OCSP Nonce:" in out
