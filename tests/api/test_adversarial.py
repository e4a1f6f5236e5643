"""Adversarial requests against the recently added endpoints: OCSP, CRL shards, the
public registry, document read-back, changes after registration, people activation,
support requests, the admin audit API, renewal over mTLS, replacement codes and
applicant self-revocation.

Each refusal is pinned by its exact status and problem+json ``code``; none may be a
500, echo a secret, reach another provider's data or leave half-written state.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_mtls_app
from api.services import Services
from ca.audit import AuditEvent
from ca.models import CertificateRecord, CertificateStatus
from registration.models import Application, ApplicationStatus
from tests.conftest import START, FrozenClock
from tests.helpers import (
    APPLICANT_PASSWORD,
    approved_application,
    bearer,
    body_text,
    collect_with_csr,
    login,
    make_csr,
    officer_token,
    outbox_messages,
)

PROBLEM_JSON = "application/problem+json"
OCSP_RESPONSE = "application/ocsp-response"
ISSUING = "ehrca-issuing-1"
PERSON_PASSWORD = "person-password-2026-x"
ACTIVATION_CODE = re.compile(r"(?:Activation code|啟用碼|启用码)：?:? *([0-9A-Z-]{24})")
NOT_AFTER = START + dt.timedelta(days=730) - dt.timedelta(seconds=1)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with ``status`` and ``code`` and no internal detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert "Traceback" not in response.text and "sqlalchemy" not in response.text.lower()
    return body


def _effective(services: Services, reference: str) -> None:
    """Make ``reference`` effective as the time rule would."""
    with services.sessions() as session:
        application = session.scalars(
            select(Application).where(Application.reference == reference)
        ).one()
        application.status = ApplicationStatus.EFFECTIVE
        application.effective_at = services.clock()
        session.commit()


def _record(services: Services, serial: str) -> CertificateRecord:
    with services.sessions() as session:
        return session.scalars(
            select(CertificateRecord).where(CertificateRecord.serial_number == serial)
        ).one()


def _activation_code(services: Services, recipient: str) -> str:
    codes: list[str] = [
        code
        for message in outbox_messages(services.settings.outbox_dir)
        if message["To"] == recipient
        for code in ACTIVATION_CODE.findall(body_text(message))
    ]
    assert codes, recipient
    return codes[-1]


def _activate(client: TestClient, code: str, identity: str) -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/v1/people/activate",
        json={"activation_code": code, "identity_document": identity, "password": PERSON_PASSWORD},
    )
    return response


# --------------------------------------------------------------------------- OCSP


def _ocsp_request(
    certificate: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None = None
) -> bytes:
    sha1 = hashes.SHA1()  # noqa: S303 - CertID hash, as OpenSSL sends
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, sha1)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _ocsp_status(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == OCSP_RESPONSE
    parsed = ocsp.load_der_ocsp_response(response.content)
    if parsed.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return parsed.response_status.name
    return parsed.certificate_status.name


def test_ocsp_hostile_requests(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    pem = collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])["certificate_pem"]
    leaf = x509.load_pem_x509_certificate(pem.encode())
    issuing = x509.load_der_x509_certificate(client.get(f"/pki/ca/{ISSUING}.crt").content)
    root = x509.load_der_x509_certificate(client.get("/pki/ca/ehrca-root-1.crt").content)
    good = _ocsp_request(leaf, issuing)

    def get(encoded: str, ca: str = ISSUING) -> httpx.Response:
        response: httpx.Response = client.get(f"/pki/ocsp/{ca}/{encoded}")
        return response

    def post(der: bytes, ca: str = ISSUING, content_type: str = "application/ocsp-request") -> Any:
        return client.post(f"/pki/ocsp/{ca}", content=der, headers={"content-type": content_type})

    b64 = base64.urlsafe_b64encode(good).decode().rstrip("=")
    assert _ocsp_status(get(b64)) == "GOOD"
    # Not base64, not DER, empty, or far over the 16 KiB request limit: malformedRequest.
    for garbage in ("!!!!", "%00", "A", "MAA=", "A" * 30_000, "..%2F..%2Fetc%2Fpasswd"):
        response = get(garbage)
        assert _ocsp_status(response) == "MALFORMED_REQUEST", garbage
        assert response.headers["cache-control"] == "no-store"
    assert_problem(client.get(f"/pki/ocsp/{ISSUING}/../../etc/passwd"), 404, "not_found")
    # The body is DER whatever the content type says; garbage in any type is malformed.
    assert _ocsp_status(post(good, content_type="application/json")) == "GOOD"
    assert _ocsp_status(post(b'{"serial": 1}', content_type="application/json")) == (
        "MALFORMED_REQUEST"
    )
    assert _ocsp_status(post(b"\x30" * (16 * 1024 + 1))) == "MALFORMED_REQUEST"
    assert_problem(post(b"\x30" * (256 * 1024 + 1)), 413, "request_too_large")
    # RFC 8954: a nonce of 1..32 octets is echoed (and never cached); 33 is malformed.
    with_nonce = post(_ocsp_request(leaf, issuing, b"n" * 32))
    assert _ocsp_status(with_nonce) == "GOOD"
    assert with_nonce.headers["cache-control"] == "no-store"
    nonce_get = get(base64.b64encode(_ocsp_request(leaf, issuing, b"n" * 32)).decode())
    assert _ocsp_status(nonce_get) == "GOOD" and nonce_get.headers["cache-control"] == "no-store"
    for der in (_ocsp_request(leaf, issuing, b"n" * 33), _ocsp_request(leaf, issuing, b"n" * 64)):
        assert _ocsp_status(post(der)) == "MALFORMED_REQUEST"
        assert _ocsp_status(get(base64.b64encode(der).decode())) == "MALFORMED_REQUEST"
    # Two requests in one requestList (RFC 5019: one only).
    request = asn1_ocsp.OCSPRequest.load(good)["tbs_request"]["request_list"][0]
    two = asn1_ocsp.OCSPRequest(
        {"tbs_request": asn1_ocsp.TBSRequest({"request_list": [request, request]})}
    ).dump()
    assert _ocsp_status(post(two)) == "MALFORMED_REQUEST"
    # Another issuer's CertID, the root (which runs no responder), an unknown CA name.
    assert _ocsp_status(post(_ocsp_request(issuing, root))) == "UNAUTHORIZED"
    assert _ocsp_status(post(good, ca="ehrca-root-1")) == "UNAUTHORIZED"
    for ca in ("nope", "%00", "x" * 5000):
        assert _ocsp_status(post(good, ca=ca)) == "UNAUTHORIZED", ca
        assert _ocsp_status(get(b64, ca=ca)) == "UNAUTHORIZED", ca
    assert _ocsp_status(get(b64, ca="..%2F" + ISSUING)) == "UNAUTHORIZED"


def test_crl_shard_urls(client: TestClient) -> None:
    # One shard configured (the default): no partition URL exists, none is looked up.
    for shard in ("0", "1", "2", "-1", str(2**31), "9" * 40):
        for ext in ("crl", "pem"):
            response = client.get(f"/pki/crl/{ISSUING}/shard-{shard}.{ext}")
            assert_problem(response, 404, "not_found")
    for path in (f"/pki/crl/{ISSUING}/shard-1e3.crl", f"/pki/crl/{ISSUING}/shard-1.xml"):
        assert_problem(client.get(path), 422, "invalid_request")
    for path in ("/pki/crl/%00/shard-1.crl", "/pki/crl/..%2F..%2Fetc/shard-1.crl"):
        assert_problem(client.get(path), 404, "not_found")
    long_name = client.get(f"/pki/crl/{'x' * 5000}/shard-1.crl")
    body = assert_problem(long_name, 404, "not_found")
    assert len(body["detail"]) < 200


# --------------------------------------------------------------------------- registry


def test_registry_search_takes_wildcards_literally(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, _token, _codes = approved_application(client, services, samples[2])
    _effective(services, reference)

    def search(query: str) -> httpx.Response:
        response: httpx.Response = client.get(f"/api/v1/registry?{query}")
        return response

    assert search("q=Kowloon%20Bay").json()["total"] == 1
    assert search("q=kowloon%20BAY").json()["total"] == 1
    # Wildcards and escape characters of LIKE match only themselves (no name has them).
    for q in ("%25", "_", "%25%25", "K%25", "Kowloon_Bay", "%5C", "%5C%25", "/", "//%25", "*"):
        response = search(f"q={q}")
        assert response.status_code == 200, (q, response.text)
        assert response.json()["total"] == 0, q
    # Unicode: HKSCS outside the BMP, RTL override, a lone surrogate (replaced).
    for q in ("%F0%A8%8B%A2", "%E2%80%AE", "%ED%A0%80", "%EF%BF%BF", "九龍灣"):
        assert search(f"q={q}").status_code == 200, q
    assert search("q=九龍灣").json()["total"] == 1
    # Control characters, an over-long term, out-of-range paging.
    for query in (
        "q=%00",
        "q=%0A",
        "q=%C2%85",
        "q=" + "a" * 101,
        "limit=0",
        "limit=-1",
        "limit=101",
        "limit=" + "9" * 40,
        "offset=-1",
        f"offset={2**31}",
        "district=Atlantis",
        "provider_type=%25",
    ):
        assert_problem(search(query), 422, "invalid_request")
    assert search(f"offset={2**31 - 1}").json() == {
        "total": 1,
        "limit": 20,
        "offset": 2**31 - 1,
        "items": [],
    }


# --------------------------------------------------------------------------- documents


def test_documents_of_other_applications_are_unreachable(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    mine, my_token, _ = approved_application(client, services, samples[2])
    theirs, their_token, _ = approved_application(client, services, samples[0])
    their_doc = client.get(f"/api/v1/applications/{theirs}", headers=bearer(their_token)).json()[
        "documents"
    ][0]["id"]
    my_doc = client.get(f"/api/v1/applications/{mine}", headers=bearer(my_token)).json()[
        "documents"
    ][0]["id"]
    reviewer = officer_token(client, services, "rev-docs", "reviewer")
    security = officer_token(client, services, "sec-docs", "security_officer")
    mine_url = f"/api/v1/applications/{mine}/documents"

    # Another application's document id under my reference, or under theirs.
    assert_problem(
        client.get(f"{mine_url}/{their_doc}", headers=bearer(my_token)), 404, "document_not_found"
    )
    assert_problem(
        client.get(
            f"/api/v1/applications/{theirs}/documents/{their_doc}", headers=bearer(my_token)
        ),
        404,
        "application_not_found",
    )
    # A reviewer can read documents, but only under the application that holds them.
    assert_problem(
        client.get(f"{mine_url}/{their_doc}", headers=bearer(reviewer)), 404, "document_not_found"
    )
    assert client.get(f"{mine_url}/{my_doc}", headers=bearer(reviewer)).status_code == 200
    assert_problem(
        client.get(f"{mine_url}/{my_doc}", headers=bearer(security)), 403, "role_not_allowed"
    )
    for document_id in ("0", "-1", str(2**31), "9" * 40):
        assert_problem(
            client.get(f"{mine_url}/{document_id}", headers=bearer(my_token)),
            404,
            "document_not_found",
        )
    for document_id in ("1e3", "%00", "one"):
        assert_problem(
            client.get(f"{mine_url}/{document_id}", headers=bearer(my_token)),
            422,
            "invalid_request",
        )
    assert_problem(client.get(f"{mine_url}/{my_doc}"), 401, "not_authenticated")


# --------------------------------------------------------------------------- changes


def test_remove_and_withdraw_state_rules_leave_nothing_half_done(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[1])  # 3 locations
    other, _other_token, _ = approved_application(client, services, samples[2])
    serials = {
        n: collect_with_csr(client, reference, token, n, codes[n], make_csr()[1])["serial_number"]
        for n in (1, 2)
    }
    reviewer = officer_token(client, services, "rev-chg", "reviewer")
    security = officer_token(client, services, "sec-chg", "security_officer")
    base = f"/api/v1/applications/{reference}"

    def remove(number: str | int, who: str = token, ref: str = reference) -> httpx.Response:
        response: httpx.Response = client.post(
            f"/api/v1/applications/{ref}/service-locations/{number}/remove",
            json={"reason": "closed"},
            headers=bearer(who),
        )
        return response

    for number in ("0", "-5", "99", str(2**31), "9" * 40):
        assert_problem(remove(number), 404, "service_location_not_found")
    assert_problem(remove(1, reviewer), 403, "applicant_only")
    assert_problem(remove(1, security), 403, "applicant_only")
    assert_problem(remove(1, ref=other), 404, "application_not_found")
    for bad in ({"reason": ""}, {"reason": "\x00"}, {}, {"reason": "x", "extra": 1}):
        response = client.post(
            f"{base}/service-locations/1/remove", json=bad, headers=bearer(token)
        )
        assert_problem(response, 422, "invalid_request")
    assert _record(services, serials[1]).status is CertificateStatus.ISSUED

    removed = remove(1)
    assert removed.status_code == 200, removed.text
    assert removed.json()["revoked_serial_numbers"] == [serials[1]]
    assert_problem(remove(1), 410, "service_location_removed")
    assert_problem(remove(1), 410, "service_location_removed")
    assert _record(services, serials[2]).status is CertificateStatus.ISSUED

    addition = {
        "kind": "add_service_location",
        "service_location": samples[1]["service_locations"][0],
        "reason": "reopening",
    }
    pending = client.post(f"{base}/change-requests", json=addition, headers=bearer(token))
    assert pending.status_code == 201, pending.text
    assert_problem(
        client.post(f"{base}/change-requests", json=addition, headers=bearer(reviewer)),
        403,
        "applicant_only",
    )
    assert_problem(
        client.post(f"{base}/withdraw", json={"reason": "bye"}, headers=bearer(reviewer)),
        403,
        "applicant_only",
    )

    withdrawn = client.post(f"{base}/withdraw", json={"reason": "bye"}, headers=bearer(token))
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["revoked_serial_numbers"] == [serials[2]]
    assert_problem(
        client.post(f"{base}/withdraw", json={"reason": "bye"}, headers=bearer(token)),
        409,
        "invalid_state_transition",
    )
    assert_problem(
        client.post(f"{base}/change-requests", json=addition, headers=bearer(token)),
        409,
        "registration_not_active",
    )
    assert_problem(remove(3), 409, "registration_not_active")
    assert_problem(
        client.post(
            f"/api/v1/officer/change-requests/{pending.json()['id']}/decision",
            json={"decision": "approve", "reason": "ok"},
            headers=bearer(reviewer),
        ),
        409,
        "change_request_decided",
    )
    assert_problem(
        client.post(
            f"/api/v1/officer/applications/{reference}/service-locations/3/replacement-code",
            json={},
            headers=bearer(security),
        ),
        410,
        "application_withdrawn",
    )
    assert_problem(
        client.post(
            f"{base}/certificates/{serials[2]}/revoke",
            json={"reason": "keyCompromise"},
            headers=bearer(token),
        ),
        409,
        "certificate_already_revoked",
    )
    # Every certificate revoked exactly once, with cessationOfOperation.
    for serial in serials.values():
        assert _record(services, serial).status is CertificateStatus.REVOKED
    with services.sessions() as session:
        revoked_events = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "certificate.revoked")
        ).all()
        assert sorted(e.subject or "" for e in revoked_events) == sorted(serials.values())
        assert all(
            json.loads(e.details)["reason"] == "cessationOfOperation" for e in revoked_events
        )
    history = client.get(f"{base}/change-requests", headers=bearer(token)).json()
    assert [c["status"] for c in history["items"] if c["kind"] == "add_service_location"] == [
        "rejected"
    ]


# --------------------------------------------------------------------------- self-revocation


def test_self_revocation_refuses_officer_reasons_and_other_providers(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    other, other_token, other_codes = approved_application(client, services, samples[0])
    serial = collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])["serial_number"]
    theirs = collect_with_csr(client, other, other_token, 1, other_codes[1], make_csr()[1])[
        "serial_number"
    ]
    security = officer_token(client, services, "sec-self", "security_officer")
    url = f"/api/v1/applications/{reference}/certificates/{{}}/revoke"

    def revoke(target: str, reason: str, who: str = token) -> httpx.Response:
        response: httpx.Response = client.post(
            url.format(target), json={"reason": reason}, headers=bearer(who)
        )
        return response

    for reason in (
        "cessationOfOperation",
        "affiliationChanged",
        "privilegeWithdrawn",
        "certificateHold",
        "removeFromCRL",
        "cACompromise",
        "aACompromise",
        "unspecified",
    ):
        assert_problem(revoke(serial, reason), 403, "revocation_reason_not_allowed")
    assert_problem(revoke(serial, "superseded", security), 403, "applicant_only")
    # Another provider's serial, under my reference or theirs.
    assert_problem(revoke(theirs, "keyCompromise"), 404, "certificate_not_found")
    response = client.post(
        f"/api/v1/applications/{other}/certificates/{theirs}/revoke",
        json={"reason": "keyCompromise"},
        headers=bearer(token),
    )
    assert_problem(response, 404, "application_not_found")
    for target in ("%00", "zz", "f" * 41, "0"):
        assert_problem(revoke(target, "superseded"), 404, "certificate_not_found")
    assert _record(services, serial).status is CertificateStatus.ISSUED
    assert _record(services, theirs).status is CertificateStatus.ISSUED
    ok = revoke(serial, "superseded")
    assert ok.status_code == 200, ok.text
    assert_problem(revoke(serial, "keyCompromise"), 409, "certificate_already_revoked")


# --------------------------------------------------------------------------- replacement codes


def test_replacement_code_roles_and_bounds(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, _codes = approved_application(client, services, samples[2])
    reviewer = officer_token(client, services, "rev-repl", "reviewer")
    security = officer_token(client, services, "sec-repl", "security_officer")
    admin = officer_token(client, services, "adm-repl", "admin")
    url = f"/api/v1/officer/applications/{reference}/service-locations/{{}}/replacement-code"

    for who in (reviewer, admin, token):
        assert_problem(
            client.post(url.format(1), json={}, headers=bearer(who)), 403, "role_not_allowed"
        )
    for number in ("0", "-1", "2", str(2**31), "9" * 40):
        response = client.post(url.format(number), json={}, headers=bearer(security))
        assert_problem(response, 404, "service_location_not_found")
    for body in ({"reason": "cessationOfOperation"}, {"reason": "x"}, {"code": "AAAA"}):
        response = client.post(url.format(1), json=body, headers=bearer(security))
        assert_problem(response, 422, "invalid_request")
    response = client.post(
        "/api/v1/officer/applications/%00/service-locations/1/replacement-code",
        json={},
        headers=bearer(security),
    )
    assert_problem(response, 404, "application_not_found")
    issued = client.post(url.format(1), json={}, headers=bearer(security))
    assert issued.status_code == 201, issued.text
    # The officer never sees the code: nothing code-shaped in the answer.
    assert not re.search(r"[0-9A-Z]{4}(?:-[0-9A-Z]{4}){4}", issued.text), issued.text


# --------------------------------------------------------------------------- people and staff


def test_activation_brute_force_and_other_providers(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, applicant, _ = approved_application(client, services, samples[0])
    other, other_applicant, _ = approved_application(client, services, samples[2])
    admin = samples[0]["user_admins"][0]
    code = _activation_code(services, admin["email"])
    # Unknown codes (including ones shaped like a real one) never count against a code.
    for guess in ("AAAA-BBBB-CCCC-DDDD-EEEE", code.lower()[:-1] + "x", "\x00", "💥"):
        assert_problem(
            _activate(client, guess, admin["identity_document"]), 403, "activation_code_invalid"
        )
    assert_problem(_activate(client, "A" * 65, admin["identity_document"]), 422, "invalid_request")
    # Five wrong identity numbers void the code, even for the right one afterwards.
    for _ in range(5):
        response = _activate(client, code, "Y765432(2)")
        assert_problem(response, 403, "identity_document_mismatch")
        assert admin["identity_document"] not in response.text
    for _ in range(2):
        assert_problem(
            _activate(client, code, admin["identity_document"]), 409, "activation_code_void"
        )
    # A new invitation (the applicant) works; the voided code stays void.
    invitation = f"/api/v1/applications/{reference}/user-admins/1/invitation"
    assert_problem(
        client.post(invitation, headers=bearer(other_applicant)), 404, "application_not_found"
    )
    assert client.post(invitation, headers=bearer(applicant)).status_code == 202
    fresh = _activation_code(services, admin["email"])
    assert fresh != code
    done = _activate(client, fresh, admin["identity_document"])
    assert done.status_code == 200, done.text
    assert_problem(
        _activate(client, fresh, admin["identity_document"]), 409, "activation_code_used"
    )
    assert_problem(_activate(client, code, admin["identity_document"]), 409, "activation_code_void")

    # The user administrator of one provider reaches nothing of another.
    _effective(services, reference)
    person = login(client, admin["email"], PERSON_PASSWORD)
    staff = {
        "name": "LAU Ming",
        "profession": "doctor",
        "registration_number": "M12345",
        "identity_document": "C345678(A)",
        "email": "lau.ming@example.org",
    }
    prefix = f"/api/v1/providers/{other}/staff"
    assert_problem(client.get(prefix, headers=bearer(person)), 404, "provider_not_found")
    assert_problem(
        client.post(prefix, json=staff, headers=bearer(person)), 404, "provider_not_found"
    )
    assert_problem(
        client.post(f"{prefix}/1/disable", headers=bearer(person)), 404, "provider_not_found"
    )
    assert_problem(
        client.get(f"{prefix}/me", headers=bearer(person)), 404, "staff_account_not_found"
    )
    for path in ("", "/documents/1", "/change-requests"):
        assert_problem(
            client.get(f"/api/v1/applications/{reference}{path}", headers=bearer(person)),
            404,
            "application_not_found",
        )
    assert_problem(
        client.get("/api/v1/admin/audit-events", headers=bearer(person)), 403, "role_not_allowed"
    )
    assert_problem(
        client.get("/api/v1/officer/support-requests", headers=bearer(person)),
        403,
        "role_not_allowed",
    )
    for account_id in ("0", str(2**31), "-1"):
        assert_problem(
            client.post(
                f"/api/v1/providers/{reference}/staff/{account_id}/disable", headers=bearer(person)
            ),
            422,
            "invalid_request",
        )
    assert_problem(
        client.post(f"/api/v1/providers/{reference}/staff/7/disable", headers=bearer(person)),
        404,
        "staff_account_not_found",
    )


def test_support_requests_roles_and_window(
    client: TestClient, services: Services, samples: list[dict[str, Any]], clock: FrozenClock
) -> None:
    reference, token, _ = approved_application(client, services, samples[2])
    other, _other_token, _ = approved_application(client, services, samples[0])
    reviewer = officer_token(client, services, "rev-sup", "reviewer")
    security = officer_token(client, services, "sec-sup", "security_officer")
    url = f"/api/v1/applications/{reference}/support-requests"
    ask = {"subject": "cannot connect", "message": "the clinic PC says handshake failure"}

    assert_problem(client.post(url, json=ask, headers=bearer(reviewer)), 403, "applicant_only")
    assert_problem(
        client.post(
            f"/api/v1/applications/{other}/support-requests", json=ask, headers=bearer(token)
        ),
        404,
        "application_not_found",
    )
    for bad in (
        {"subject": "a\nBcc: x@example.org", "message": "m"},
        {"subject": "\x00", "message": "m"},
        {"subject": "s" * 201, "message": "m"},
        {"subject": "s", "message": "m" * 4001},
        {"subject": " ", "message": "m"},
        {"subject": "s", "message": "m", "extra": True},
    ):
        assert_problem(client.post(url, json=bad, headers=bearer(token)), 422, "invalid_request")
    assert client.post(url, json=ask, headers=bearer(token)).status_code == 201
    assert_problem(
        client.get("/api/v1/officer/support-requests", headers=bearer(security)),
        403,
        "role_not_allowed",
    )
    assert_problem(
        client.get("/api/v1/officer/support-requests", headers=bearer(token)),
        403,
        "role_not_allowed",
    )
    for query in ("limit=0", "limit=201", "offset=-1", f"offset={2**31}"):
        assert_problem(
            client.get(f"/api/v1/officer/support-requests?{query}", headers=bearer(reviewer)),
            422,
            "invalid_request",
        )
    clock.advance(days=14, seconds=1)
    late = login(client, reference, APPLICANT_PASSWORD)
    assert_problem(client.post(url, json=ask, headers=bearer(late)), 409, "support_window_closed")


# --------------------------------------------------------------------------- admin audit API


def test_audit_api_dates_roles_and_bounds(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    approved_application(client, services, samples[2])
    admin = officer_token(client, services, "adm-audit", "admin")
    reviewer = officer_token(client, services, "rev-audit", "reviewer")
    security = officer_token(client, services, "sec-audit", "security_officer")
    url = "/api/v1/admin/audit-events"

    def events(query: str, who: str = admin) -> httpx.Response:
        response: httpx.Response = client.get(f"{url}?{query}", headers=bearer(who))
        return response

    # Bounds an offset pushes outside years 1-9999 in UTC were a 500 (OverflowError).
    for query in (
        "since=0001-01-01T00:00:00%2B05:00",
        "until=0001-01-01T00:00:00%2B00:01",
        "since=9999-12-31T23:59:59-05:00",
        "until=9999-12-31T23:59:59-14:00",
        "since=yesterday",
        "since=2026-11-29T09:00:00",
        "until=" + "9" * 40,
        "limit=0",
        "limit=1001",
        "offset=-1",
        f"offset={2**31}",
        "actor=%00",
        "event_type=" + "x" * 65,
    ):
        assert_problem(events(query), 422, "invalid_request")
    total = events("").json()["total"]
    assert total > 0
    # The offset is honoured: 17:00+08:00 is START; every event happened at START.
    assert events("since=2026-11-29T17:00:00%2B08:00").json()["total"] == total
    assert events("until=2026-11-29T17:00:00%2B08:00").json()["total"] == 0
    assert events("since=0001-01-01T05:00:00%2B05:00").json()["total"] == total
    assert events("until=9999-12-31T23:59:59%2B00:00").json()["total"] == total
    assert events("actor=%25").json()["total"] == 0
    assert events("actor=%ED%A0%80").json()["total"] == 0
    for who in (reviewer, security):
        assert_problem(events("", who), 403, "role_not_allowed")
    assert_problem(client.get(url), 401, "not_authenticated")


# --------------------------------------------------------------------------- renewal (mTLS)


class Presented:
    """The certificate chain the next mTLS request presents (PEM)."""

    pem: str = ""


@pytest.fixture
def mtls(services: Services) -> Iterator[tuple[TestClient, Presented]]:
    """A client of the mTLS app whose requests carry ``Presented.pem`` as verified."""
    app = create_mtls_app(services)
    presented = Presented()

    async def with_tls(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            chain = [presented.pem] if presented.pem else []
            tls = {"client_cert_chain": chain, "client_cert_error": None}
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), "tls": tls}}
        await app(scope, receive, send)

    with TestClient(with_tls, raise_server_exceptions=False) as test_client:
        yield test_client, presented


def test_renewal_refusals_leave_the_presented_certificate_valid(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    clock: FrozenClock,
    mtls: tuple[TestClient, Presented],
) -> None:
    mtls_client, presented = mtls
    reference, token, codes = approved_application(client, services, samples[2])
    old_key, csr = make_csr()
    old = collect_with_csr(client, reference, token, 1, codes[1], csr)
    presented.pem = old["certificate_pem"]

    def renew(**kwargs: Any) -> httpx.Response:
        response: httpx.Response = mtls_client.post("/mtls/renew", **kwargs)
        return response

    assert_problem(renew(json={"csr": make_csr()[1]}), 409, "renewal_too_early")
    clock.now = NOT_AFTER - dt.timedelta(days=10)
    for body in (
        {},
        {"csr": ""},
        {"csr": "x" * (32 * 1024 + 1)},
        {"csr": ["a"]},
        {"csr": "a", "b": 1},
    ):
        assert_problem(renew(json=body), 422, "invalid_request")
    assert_problem(
        renew(content=b"csr=x", headers={"content-type": "application/x-www-form-urlencoded"}),
        422,
        "invalid_request",
    )
    for bad in (
        "\x00",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        old["certificate_pem"],
    ):
        assert_problem(renew(json={"csr": bad}), 400, "csr_malformed")
    assert_problem(renew(json={"csr": make_csr(old_key)[1]}), 422, "renewal_key_reused")
    # The issuing CA's own certificate is not a client of this CA's database.
    presented.pem = old["chain_pem"].split("-----END CERTIFICATE-----")[0] + (
        "-----END CERTIFICATE-----\n"
    )
    assert_problem(renew(json={"csr": make_csr()[1]}), 403, "client_certificate_unknown")
    presented.pem = old["certificate_pem"]
    assert _record(services, old["serial_number"]).status is CertificateStatus.ISSUED

    # Revoked by the applicant: renewal is refused from the next request on.
    revoked = client.post(
        f"/api/v1/applications/{reference}/certificates/{old['serial_number']}/revoke",
        json={"reason": "keyCompromise"},
        headers=bearer(login(client, reference, APPLICANT_PASSWORD)),
    )
    assert revoked.status_code == 200, revoked.text
    assert_problem(renew(json={"csr": make_csr()[1]}), 403, "client_certificate_revoked")
    with services.sessions() as session:
        assert (
            session.scalars(
                select(CertificateRecord).where(
                    CertificateRecord.provider_reference == reference,
                    CertificateRecord.status == CertificateStatus.ISSUED,
                )
            ).all()
            == []
        )


# --------------------------------------------------------------------------- secrets


def test_no_secret_in_responses_logs_or_audit(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ehrca")
    sample = samples[2]
    reference, token, codes = approved_application(client, services, sample)
    admin = sample["user_admins"][0]
    activation = _activation_code(services, admin["email"])
    assert_problem(_activate(client, activation, "Y765432(2)"), 403, "identity_document_mismatch")
    assert _activate(client, activation, admin["identity_document"]).status_code == 200
    collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])
    security = officer_token(client, services, "sec-secret", "security_officer")
    admin_officer = officer_token(client, services, "adm-secret", "admin")
    replaced = client.post(
        f"/api/v1/officer/applications/{reference}/service-locations/1/replacement-code",
        json={"reason": "keyCompromise"},
        headers=bearer(security),
    )
    assert replaced.status_code == 201, replaced.text
    audit = client.get("/api/v1/admin/audit-events?limit=1000", headers=bearer(admin_officer))
    me = client.get("/api/v1/me", headers=bearer(login(client, admin["email"], PERSON_PASSWORD)))
    secrets_ = [
        *codes.values(),
        *(c.replace("-", "") for c in codes.values()),
        activation,
        activation.replace("-", ""),
        admin["identity_document"],
        admin["identity_document"][:7],
        APPLICANT_PASSWORD,
        PERSON_PASSWORD,
        token,
        "PRIVATE KEY",
    ]
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for text in (audit.text, me.text, replaced.text, logged):
        for secret in secrets_:
            assert secret not in text, secret
