"""The five steps with real values: each step's validation, the review's missing
list, supporting documents (type from content, spoofing, size, path tricks, the same
file twice, who may read them back), and Chinese names end to end into the
certificate subject."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.services import Services
from registration.models import UserAdmin
from tests.helpers import (
    PDF,
    PNG,
    approved_application,
    bearer,
    body_text,
    collect_with_csr,
    create_application,
    make_csr,
    officer_token,
    outbox_messages,
    submitted_application,
)


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def test_each_step_validates_real_values(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    sample = samples[0]  # Dr Chan Tai Man Clinic, solo practice, zh-Hant
    reference, token = create_application(client, sample)
    base = f"/api/v1/applications/{reference}"
    auth = bearer(token)

    def put(step: str, body: Any) -> Any:
        return client.put(f"{base}/{step}", json=body, headers=auth)

    # Step 1: provider.
    bad_provider: list[tuple[str, Any]] = [
        ("provider_type", "clinic"),
        ("business_registration_number", "1234567"),
        ("business_registration_number", "1234567A"),
        ("phone", "12345678"),  # HK numbers start with 2-9
        ("phone", "+852 2345 6789"),
        ("email", "clinic.example.org"),
        ("preferred_language", "fr"),
        ("name_en", "C" * 65),
        ("name_zh", "陳" * 65),
        ("name_en", "Dr Chan\nTai Man Clinic"),
        ("correspondence_address", ""),
    ]
    for field, value in bad_provider:
        body = _problem(
            put("provider", {**sample["provider"], field: value}), 422, "invalid_request"
        )
        assert field in body["detail"], (field, body["detail"])
    missing = {k: v for k, v in sample["provider"].items() if k != "correspondence_address"}
    _problem(put("provider", missing), 422, "invalid_request")
    spaced = {
        **sample["provider"],
        "phone": "2345 6789",
        "business_registration_number": " 12345678 ",
    }
    review = put("provider", spaced).json()
    assert review["provider"]["phone"] == "23456789"
    assert review["provider"]["business_registration_number"] == "12345678"
    assert review["provider"]["name_zh"] == "陳大文醫生醫務所"
    assert review["language"] == "zh-Hant"
    assert review["missing"] == [
        "user_admins",
        "service_locations",
        "document:business_registration_certificate",
        "document:professional_registration_of_person_in_charge",
    ]

    # Step 2: user administrators (at least one; HKID check digit; hashed).
    admin = sample["user_admins"][0]
    _problem(put("user-admins", []), 422, "invalid_request")
    for field, value in (
        ("identity_document", "Y765432(3)"),  # wrong check digit (Y765432(2) is right)
        ("identity_document", "Y7654321"),
        ("identity_document", "765432(2)"),
        ("email", "taiman@"),
        ("phone", "9123456"),
        ("name", ""),
    ):
        body = _problem(put("user-admins", [{**admin, field: value}]), 422, "invalid_request")
        assert str(value) not in str(body) or not value  # input is never echoed
    review = put("user-admins", sample["user_admins"]).json()
    assert review["user_admins"] == [
        {
            "name": "CHAN Tai Man",
            "identity_document_last4": "4563",
            "email": "taiman@example.org",
            "phone": "91234567",
            "position": "Proprietor",
        }
    ]
    with services.sessions() as session:
        row = session.scalars(select(UserAdmin)).one()
        assert row.identity_document_hash.startswith("scrypt$")
        assert "123456" not in row.identity_document_hash

    # Step 3: service locations (one of the 18 districts, 8-digit phone, opening status).
    location = sample["service_locations"][0]
    _problem(put("service-locations", []), 422, "invalid_request")
    for field, value in (
        ("district", "Kowloon"),
        ("district", "yau tsim mong"),
        ("phone", "2345678"),
        ("opening_status", "closed"),
        ("name_en", ""),
    ):
        _problem(put("service-locations", [{**location, field: value}]), 422, "invalid_request")
    second = {
        **location,
        "name_en": "Mong Kok Clinic",
        "name_zh": "旺角診所",
        "opening_status": "opening_soon",
    }
    review = put("service-locations", [location, second]).json()
    assert [(s["id"], s["name_zh"], s["opening_status"]) for s in review["service_locations"]] == [
        (1, "尖沙咀診所", "open"),
        (2, "旺角診所", "opening_soon"),
    ]

    # Step 5 refuses with the list until the documents are there.
    body = _problem(client.post(f"{base}/submit", headers=auth), 422, "application_incomplete")
    assert body["missing"] == [
        "document:business_registration_certificate",
        "document:professional_registration_of_person_in_charge",
    ]


def test_documents_from_content_and_readable_only_by_applicant_and_officers(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token = create_application(client, samples[1])
    other_reference, other_token = create_application(client, samples[2])
    url = f"/api/v1/applications/{reference}/documents"

    def upload(content: bytes, name: str, kind: str = "business_registration_certificate") -> Any:
        return client.post(
            url,
            data={"kind": kind},
            files={"file": (name, content, "application/pdf")},
            headers=bearer(token),
        )

    # A script named .pdf (and declared as PDF) is refused: the type comes from the bytes.
    script = b"#!/usr/bin/env python3\nimport os; os.system('rm -rf /')\n"
    _problem(upload(script, "licence.pdf"), 422, "document_type_not_allowed")
    _problem(
        upload(b"<html><script>alert(1)</script></html>", "br.pdf"),
        422,
        "document_type_not_allowed",
    )
    _problem(upload(b"PK\x03\x04" + b"\x00" * 40, "br.pdf"), 422, "document_type_not_allowed")
    # Over 10 MB (the setting) is refused.
    limit = services.settings.max_document_bytes
    _problem(upload(PDF + b" " * (limit + 1 - len(PDF)), "big.pdf"), 422, "document_too_large")

    # A PNG named .pdf is stored as what it is; the path in the name is dropped.
    png = upload(PNG, "../../../etc/商業登記證.pdf")
    assert png.status_code == 201, png.text
    stored = png.json()
    assert stored["content_type"] == "image/png"
    assert stored["filename"] == "商業登記證.pdf"
    pdf = upload(PDF, "..\\..\\licence.pdf", kind="professional_registration_of_person_in_charge")
    assert pdf.status_code == 201 and pdf.json()["filename"] == "licence.pdf"
    again = upload(PNG, "copy.png")
    assert again.status_code == 200 and again.json()["id"] == stored["id"]
    path = services.settings.documents_dir / stored["sha256"][:2] / stored["sha256"]
    assert path.read_bytes() == PNG

    doc_url = f"{url}/{stored['id']}"
    response = client.get(doc_url, headers=bearer(token))
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert f"filename*=utf-8''{quote('商業登記證.pdf')}" in disposition
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "no-store" in response.headers["cache-control"]

    for name, role in (("rita", "reviewer"), ("ada", "admin")):
        officer = officer_token(client, services, name, role)
        read = client.get(doc_url, headers=bearer(officer))
        assert read.status_code == 200 and read.content == PNG
    security = officer_token(client, services, "sam", "security_officer")
    _problem(client.get(doc_url, headers=bearer(security)), 403, "role_not_allowed")
    # Another applicant, by the right URL or through its own reference: 404.
    _problem(client.get(doc_url, headers=bearer(other_token)), 404, "application_not_found")
    _problem(
        client.get(
            f"/api/v1/applications/{other_reference}/documents/{stored['id']}",
            headers=bearer(other_token),
        ),
        404,
        "document_not_found",
    )
    _problem(client.get(doc_url), 401, "not_authenticated")
    _problem(client.get(f"{url}/999999", headers=bearer(token)), 404, "document_not_found")
    _problem(client.get(f"{url}/{10**30}", headers=bearer(token)), 404, "document_not_found")
    _problem(client.get(f"{url}/x", headers=bearer(token)), 422, "invalid_request")
    path.unlink()
    _problem(client.get(doc_url, headers=bearer(token)), 404, "document_not_found")


def test_chinese_names_end_to_end_into_the_certificate_subject(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    for sample, label in ((samples[0], "下載碼"), (samples[2], "下载码")):
        reference, token, codes = approved_application(client, services, sample)
        mail = next(
            m
            for m in outbox_messages(services.settings.outbox_dir)
            if reference in str(m["Subject"]) and "/certificate" in body_text(m)
        )
        text = body_text(mail)
        assert label in text
        location = sample["service_locations"][0]
        assert location["name_zh"] in text
        _key, csr = make_csr(subject="CN=someone else")
        body = collect_with_csr(client, reference, token, 1, codes[1], csr)
        certificate = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
        assert [(a.oid, a.value) for a in certificate.subject] == [
            (NameOID.COUNTRY_NAME, "HK"),
            (NameOID.ORGANIZATION_NAME, sample["provider"]["name_en"]),
            (NameOID.ORGANIZATION_NAME, sample["provider"]["name_zh"]),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, location["name_en"]),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, location["name_zh"]),
            (NameOID.COMMON_NAME, f"{reference}-L1"),
        ]
        # UTF8String, so the Chinese bytes are exactly the UTF-8 of the names.
        der = certificate.subject.public_bytes()
        assert sample["provider"]["name_zh"].encode("utf-8") in der
        assert location["name_zh"].encode("utf-8") in der


def test_supplementary_documents_and_resubmission(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    sample = copy.deepcopy(samples[2])  # laboratory, zh-Hans
    reference, token = submitted_application(client, sample)
    base = f"/api/v1/applications/{reference}"
    rita = officer_token(client, services, "rita", "reviewer")
    reason = "请上载有效的实验所认可证书（现有文件已过期）"
    response = client.post(
        f"/api/v1/officer/applications/{reference}/decision",
        json={"decision": "request_documents", "reason": reason},
        headers=bearer(rita),
    )
    assert response.status_code == 200, response.text
    review = client.get(base, headers=bearer(token)).json()
    assert review["status"] == "documents_requested"
    assert review["decision_reason"] == reason
    assert review["events"][-1]["actor"] == "rita" and review["events"][-1]["reason"] == reason

    # Steps stay locked; supplementary documents are accepted; then re-submit.
    put = client.put(f"{base}/provider", json=sample["provider"], headers=bearer(token))
    _problem(put, 409, "application_not_editable")
    extra = client.post(
        f"{base}/documents",
        data={"kind": "laboratory_accreditation"},
        files={
            "file": ("认可证书-2027.pdf", PDF.replace(b"Catalog", b"Renewed"), "application/pdf")
        },
        headers=bearer(token),
    )
    assert extra.status_code == 201, extra.text
    assert extra.json()["filename"] == "认可证书-2027.pdf"
    resubmitted = client.post(f"{base}/submit", headers=bearer(token))
    assert resubmitted.status_code == 200, resubmitted.text
    assert [e["to_status"] for e in resubmitted.json()["events"]] == [
        "submitted",
        "documents_requested",
        "submitted",
    ]
    late = client.post(
        f"{base}/documents",
        data={"kind": "other"},
        files={"file": ("late.pdf", PDF.replace(b"Catalog", b"Late"), "application/pdf")},
        headers=bearer(token),
    )
    _problem(late, 409, "application_not_editable")
