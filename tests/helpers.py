"""Test helpers: drive the application flow through the API, read the outbox,
and check certificates and CRLs with pkilint and ``openssl``."""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from api.services import Services
from ca import lint
from ca.models import CARole
from ca.service import get_authority
from registration.rules import REQUIRED_DOCUMENTS
from revocation.service import latest_crl

APPLICANT_PASSWORD = "clinic-password-2026"
OFFICER_PASSWORD = "officer-password-2026"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0f01f0005000201a5b0d6a90000000049454e44ae426082"
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: TestClient, username: str, password: str) -> str:
    response = client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def add_officer(services: Services, name: str, role: str) -> None:
    from registration.accounts import create_officer
    from registration.models import OfficerRole

    with services.sessions() as session:
        create_officer(session, name, OfficerRole(role), OFFICER_PASSWORD, now=services.clock())


def officer_token(client: TestClient, services: Services, name: str, role: str) -> str:
    add_officer(services, name, role)
    return login(client, name, OFFICER_PASSWORD)


def create_application(client: TestClient, sample: dict[str, Any]) -> tuple[str, str]:
    """Create and log in; returns ``(reference, token)``."""
    response = client.post(
        "/api/v1/applications",
        json={
            "contact_email": sample["provider"]["email"],
            "password": APPLICANT_PASSWORD,
            "language": sample["provider"]["preferred_language"],
        },
    )
    assert response.status_code == 201, response.text
    reference: str = response.json()["reference"]
    return reference, login(client, reference, APPLICANT_PASSWORD)


def fill_steps(client: TestClient, reference: str, token: str, sample: dict[str, Any]) -> None:
    base = f"/api/v1/applications/{reference}"
    for path, body in (
        ("provider", sample["provider"]),
        ("user-admins", sample["user_admins"]),
        ("service-locations", sample["service_locations"]),
    ):
        response = client.put(f"{base}/{path}", json=body, headers=bearer(token))
        assert response.status_code == 200, response.text
    for i, kind in enumerate(REQUIRED_DOCUMENTS[sample["provider"]["provider_type"]]):
        content = PDF.replace(b"Catalog", f"Catalog{i}".encode())
        response = client.post(
            f"{base}/documents",
            data={"kind": kind},
            files={"file": (f"{kind}.pdf", content, "application/pdf")},
            headers=bearer(token),
        )
        assert response.status_code == 201, response.text


def submitted_application(client: TestClient, sample: dict[str, Any]) -> tuple[str, str]:
    reference, token = create_application(client, sample)
    fill_steps(client, reference, token, sample)
    response = client.post(f"/api/v1/applications/{reference}/submit", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "submitted"
    return reference, token


def approved_application(
    client: TestClient, services: Services, sample: dict[str, Any]
) -> tuple[str, str, dict[int, str]]:
    """Submit and approve ``sample``; returns ``(reference, token, {location: code})``
    with the codes read from the outbox mail."""
    reference, token = submitted_application(client, sample)
    reviewer = officer_token(client, services, f"rev-{reference.lower()}", "reviewer")
    response = client.post(
        f"/api/v1/officer/applications/{reference}/decision",
        json={"decision": "approve", "reason": "documents verified"},
        headers=bearer(reviewer),
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "approved"
    return reference, token, download_codes(services.settings.outbox_dir, reference)


def outbox_messages(outbox: Path) -> list[email.message.EmailMessage]:
    """Every delivered message in outbox order (the ``outbox-<id>`` of its Message-ID:
    Maildir file names sort by wall-clock second, then by unpadded microseconds)."""
    messages = []
    for path in sorted((outbox / "new").iterdir()):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        messages.append(message)

    def outbox_id(message: email.message.EmailMessage) -> int:
        found = re.search(r"outbox-(\d+)@", str(message["Message-ID"]))
        return int(found.group(1)) if found else 0

    return sorted(messages, key=outbox_id)


def body_text(message: email.message.EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def download_codes(outbox: Path, reference: str) -> dict[int, str]:
    """``{service location number: code}`` from the login-instructions mail."""
    for message in outbox_messages(outbox):
        text = body_text(message)
        if reference in str(message["Subject"]) and "/certificate" in text:
            numbers = [int(n) for n in re.findall(r"/service-locations/(\d+)/certificate", text)]
            codes = re.findall(r"(?:Download code|下載碼|下载码)：?:? *([0-9A-Z-]{24})", text)
            assert len(numbers) == len(codes) > 0, text
            return dict(zip(numbers, codes, strict=True))
    raise AssertionError(f"no login-instructions mail for {reference}")


def make_csr(
    key: ec.EllipticCurvePrivateKey | None = None, *, subject: str = "ignored"
) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def collect_with_csr(
    client: TestClient, reference: str, token: str, number: int, code: str, csr: str
) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/applications/{reference}/service-locations/{number}/certificate",
        json={"download_code": code, "csr": csr},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------- PKI checks


def assert_lint_clean(der: bytes, *, kind: str = "certificate") -> None:
    """No ERROR or FATAL pkilint finding (known false positives waived, see ca.lint)."""
    if kind == "crl":
        findings = lint.blocking(lint.lint_crl(der))
    else:
        findings = [
            f
            for f in lint.blocking(lint.lint_certificate(der))
            if not lint.is_known_false_positive(f)
        ]
    assert findings == [], findings


def ca_pems(services: Services, tmp: Path) -> tuple[Path, Path, Path]:
    """Write root.pem, issuing.pem and crls.pem (both CAs' newest CRLs) to ``tmp``."""
    with services.sessions() as session:
        root = get_authority(session, CARole.ROOT)
        issuing = get_authority(session, CARole.ISSUING)
        crl_pems = []
        for authority in (root, issuing):
            row = latest_crl(session, authority.id)
            assert row is not None
            crl_pems.append(
                x509.load_der_x509_crl(row.crl_der).public_bytes(serialization.Encoding.PEM)
            )
        paths = (tmp / "root.pem", tmp / "issuing.pem", tmp / "crls.pem")
        for path, data in zip(
            paths,
            (
                x509.load_der_x509_certificate(root.certificate_der).public_bytes(
                    serialization.Encoding.PEM
                ),
                x509.load_der_x509_certificate(issuing.certificate_der).public_bytes(
                    serialization.Encoding.PEM
                ),
                b"".join(crl_pems),
            ),
            strict=True,
        ):
            path.write_bytes(data)
    return paths


def openssl_verify(
    services: Services, tmp: Path, certificate_pem: str
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -x509_strict -purpose sslclient -crl_check_all`` against the
    test CA and its current CRLs."""
    root, issuing, crls = ca_pems(services, tmp)
    leaf = tmp / "leaf.pem"
    leaf.write_text(certificate_pem)
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-crl_check_all",
            "-CAfile",
            str(root),
            "-untrusted",
            str(issuing),
            "-CRLfile",
            str(crls),
            str(leaf),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
