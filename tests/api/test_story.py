"""The lifecycle story through the HTTP API: apply → approve → collect (CSR and
PKCS#12) → revoke → CRL, asserting the exact certificate and CRL fields."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi.testclient import TestClient

from api.services import Services
from tests.conftest import START, FrozenClock
from tests.helpers import (
    APPLICANT_PASSWORD,
    approved_application,
    assert_lint_clean,
    bearer,
    body_text,
    collect_with_csr,
    make_csr,
    officer_token,
    openssl_verify,
    outbox_messages,
)


def _path(url: str) -> str:
    assert url.startswith("http://127.0.0.1:8000/"), url
    return url.removeprefix("http://127.0.0.1:8000")


def test_story_csr_collection_gives_the_profiled_certificate(
    client: TestClient, services: Services, samples: list[dict[str, Any]], tmp_path: Path
) -> None:
    sample = samples[1]  # Harbour Family Medicine Group: three locations, one HKSCS name
    reference, token, codes = approved_application(client, services, sample)
    assert sorted(codes) == [1, 2, 3]

    key, csr = make_csr(subject="CN=evil,O=Someone Else")
    body = collect_with_csr(client, reference, token, 3, codes[3], csr)
    assert body["ignored"] == ["subject"]
    certificate = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    issuing, root = x509.load_pem_x509_certificates(body["chain_pem"].encode())

    # Subject from the application, not the CSR; Chinese names exact (outside the BMP too).
    assert [(a.oid, a.value) for a in certificate.subject] == [
        (NameOID.COUNTRY_NAME, "HK"),
        (NameOID.ORGANIZATION_NAME, "Harbour Family Medicine Group Limited"),
        (NameOID.ORGANIZATION_NAME, "海港家庭醫學集團有限公司"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Tuen Mun Clinic"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "屯門𨋢口診所"),
        (NameOID.COMMON_NAME, f"{reference}-L3"),
    ]
    assert (
        certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0]._type.name
        == "PrintableString"
    )
    assert (
        certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]._type.name
        == "UTF8String"
    )
    assert certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert certificate.serial_number == int(body["serial_number"], 16)
    assert len(body["serial_number"]) == 40
    assert 2**64 <= certificate.serial_number < 2**159
    # Issuer name byte-identical to the issuing CA's subject; AKI = issuer SKI.
    assert certificate.issuer.public_bytes() == issuing.subject.public_bytes()
    ext = certificate.extensions
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == (
        issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    # Validity: 730 days, notAfter inclusive (one second before the 730-day mark).
    assert certificate.not_valid_before_utc == START
    assert certificate.not_valid_after_utc == START + dt.timedelta(days=730) - dt.timedelta(
        seconds=1
    )
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    assert ext.get_extension_for_class(x509.ExtendedKeyUsage).value._usages == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"https://id.ehrca.example/hcp/{reference}/sl/3"
    ]
    policies = ext.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["1.3.6.1.4.1.32473.1.1"]
    cdp = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    crl_url = cdp[0].full_name[0].value
    assert crl_url == "http://127.0.0.1:8000/pki/crl/ehrca-issuing-1.crl"
    aia = ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    ca_issuers = [
        d.access_location.value
        for d in aia
        if d.access_method == x509.oid.AuthorityInformationAccessOID.CA_ISSUERS
    ]
    assert ca_issuers == ["http://127.0.0.1:8000/pki/ca/ehrca-issuing-1.crt"]

    # The URLs in the certificate really serve the CA certificate and the CRL.
    served_ca = client.get(_path(ca_issuers[0]))
    assert served_ca.status_code == 200
    assert served_ca.headers["content-type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(served_ca.content) == issuing
    served_crl = client.get(_path(crl_url))
    assert served_crl.status_code == 200
    assert served_crl.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(served_crl.content)
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]

    # RFC 5280 linters and OpenSSL's strict path validation with CRL checks.
    for der in (root, issuing, certificate):
        assert_lint_clean(der.public_bytes(serialization.Encoding.DER))
    verified = openssl_verify(services, tmp_path, body["certificate_pem"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().endswith(": OK")

    # The review lists the serial under its location.
    review = client.get(f"/api/v1/applications/{reference}", headers=bearer(token)).json()
    assert review["service_locations"][2]["certificate_serial_numbers"] == [body["serial_number"]]

    # Public lookup by serial (PEM and DER).
    pem = client.get(f"/api/v1/certificates/{body['serial_number']}")
    assert pem.status_code == 200 and pem.text == body["certificate_pem"]
    der = client.get(f"/api/v1/certificates/{body['serial_number']}?format=der")
    assert der.content == certificate.public_bytes(serialization.Encoding.DER)


def test_approval_writes_acceptance_and_login_mails(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, _token, codes = approved_application(client, services, samples[0])
    messages = [
        m for m in outbox_messages(services.settings.outbox_dir) if reference in str(m["Subject"])
    ]
    # Dr Chan's clinic chose Traditional Chinese.
    assert [str(m["Subject"]) for m in messages] == [
        f"電子健康紀錄登記 {reference} 已獲接納",
        f"電子健康紀錄登記 {reference}：領取證書的方法",
    ]
    assert all(str(m["To"]) == "clinic@example.org" for m in messages)
    acceptance = body_text(messages[0])
    assert "2026-12-13" in acceptance  # effective 14 days after 2026-11-29
    login_mail = body_text(messages[1])
    assert codes[1] in login_mail and "尖沙咀診所" in login_mail
    # Codes are stored only as hashes.
    from sqlalchemy import select

    from issuance.codes import hash_download_code
    from issuance.models import DownloadCode

    with services.sessions() as session:
        row = session.scalars(select(DownloadCode)).one()
        assert row.code_sha256 == hash_download_code(codes[1])
        assert codes[1].replace("-", "") not in row.code_sha256
        assert row.expires_at == START + dt.timedelta(days=60)


@pytest.mark.parametrize("profile", ["modern", "legacy"])
def test_pkcs12_collection_opens_with_openssl_and_keytool(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    tmp_path: Path,
    profile: str,
) -> None:
    reference, token, codes = approved_application(client, services, samples[1])
    response = client.post(
        f"/api/v1/applications/{reference}/service-locations/2/certificate",
        json={
            "download_code": codes[2],
            "pkcs12_password": APPLICANT_PASSWORD,
            "pkcs12_profile": profile,
        },
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/x-pkcs12"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"] == f'attachment; filename="{reference}-L2.p12"'
    blob = response.content
    parsed = pkcs12.load_pkcs12(blob, APPLICANT_PASSWORD.encode())
    assert parsed.cert is not None and parsed.key is not None
    assert parsed.cert.friendly_name == b"Sham Shui Po Clinic"
    assert (
        format(parsed.cert.certificate.serial_number, "040x") == response.headers["x-serial-number"]
    )
    assert [c.certificate.subject.rfc4514_string() for c in parsed.additional_certs] == [
        "CN=eHR Secure Connection Issuing CA 1,O=eHR Secure Connection,C=HK",
        "CN=eHR Secure Connection Root CA 1,O=eHR Secure Connection,C=HK",
    ]
    p12 = tmp_path / "l2.p12"
    p12.write_bytes(blob)
    args = [
        "openssl",
        "pkcs12",
        "-in",
        str(p12),
        "-passin",
        f"pass:{APPLICANT_PASSWORD}",
        "-info",
        "-nokeys",
    ]
    if profile == "legacy":
        args.append("-legacy")
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    if profile == "modern":
        assert "PBES2, PBKDF2, AES-256-CBC" in out.stderr and "MAC: sha256" in out.stderr
    else:
        assert "pbeWithSHA1And3-KeyTripleDES-CBC" in out.stderr and "MAC: sha1" in out.stderr
    keytool = subprocess.run(
        [
            "keytool",
            "-list",
            "-v",
            "-storetype",
            "PKCS12",
            "-keystore",
            str(p12),
            "-storepass",
            APPLICANT_PASSWORD,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert keytool.returncode == 0, keytool.stdout + keytool.stderr
    assert "Your keystore contains 1 entry" in keytool.stdout
    assert "Alias name: sham shui po clinic" in keytool.stdout  # keytool lower-cases aliases
    assert "Entry type: PrivateKeyEntry" in keytool.stdout
    assert "Certificate chain length: 3" in keytool.stdout
    # The generated key was never stored: the database holds no private key bytes.
    from sqlalchemy import select

    from ca.models import CertificateRecord

    with services.sessions() as session:
        record = session.scalars(
            select(CertificateRecord).where(
                CertificateRecord.serial_number == response.headers["x-serial-number"]
            )
        ).one()
        assert record.key_generated_by_ca is True
    url = services.settings.resolved_database_url
    if url.startswith("sqlite:///"):
        assert isinstance(parsed.key, ec.EllipticCurvePrivateKey)
        scalar = parsed.key.private_numbers().private_value.to_bytes(32, "big")
        assert scalar not in Path(url.removeprefix("sqlite:///")).read_bytes()


def test_revocation_reaches_the_crl(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    tmp_path: Path,
    clock: FrozenClock,
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    body = collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])
    serial = body["serial_number"]
    before = x509.load_der_x509_crl(client.get("/pki/crl/ehrca-issuing-1.crl").content)
    number_before = before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert len(before) == 0
    assert_lint_clean(client.get("/pki/crl/ehrca-issuing-1.crl").content, kind="crl")

    clock.advance(hours=1)
    security = officer_token(client, services, "sec-one", "security_officer")
    response = client.post(
        f"/api/v1/officer/certificates/{serial}/revoke",
        json={"reason": "keyCompromise", "invalidity_date": "2026-11-29T08:30:00Z"},
        headers=bearer(security),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "serial_number": serial,
        "revocation_date": "2026-11-29T10:00:00Z",
        "revocation_reason": "keyCompromise",
        "invalidity_date": "2026-11-29T08:30:00Z",
        "crl_number": number_before + 1,
    }

    served = client.get("/pki/crl/ehrca-issuing-1.crl")
    assert served.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(served.content)
    assert (
        crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number_before + 1
    )
    assert crl.last_update_utc == START + dt.timedelta(hours=1)
    assert crl.next_update_utc == START + dt.timedelta(hours=25)
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.revocation_date_utc == START + dt.timedelta(hours=1)
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    assert entry.extensions.get_extension_for_class(
        x509.InvalidityDate
    ).value.invalidity_date_utc == dt.datetime(2026, 11, 29, 8, 30, tzinfo=dt.UTC)
    assert_lint_clean(served.content, kind="crl")
    pem = client.get("/pki/crl/ehrca-issuing-1.pem")
    assert pem.status_code == 200 and pem.text.startswith("-----BEGIN X509 CRL-----")

    # OpenSSL checks the CRL's signature and now refuses the certificate.
    verified = openssl_verify(services, tmp_path, body["certificate_pem"])
    assert verified.returncode != 0
    assert "certificate revoked" in verified.stdout + verified.stderr
    crl_file = tmp_path / "issuing.crl"
    crl_file.write_bytes(served.content)
    check = subprocess.run(
        [
            "openssl",
            "crl",
            "-inform",
            "DER",
            "-in",
            str(crl_file),
            "-noout",
            "-CAfile",
            str(tmp_path / "issuing.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0 and "verify OK" in check.stderr + check.stdout

    # The root's CRL is served too, signed by the root.
    root_crl = client.get("/pki/crl/ehrca-root-1.crl")
    assert (
        root_crl.status_code == 200 and root_crl.headers["content-type"] == "application/pkix-crl"
    )
    assert_lint_clean(root_crl.content, kind="crl")

    # Revoking again is a conflict that reports the existing revocation.
    again = client.post(
        f"/api/v1/officer/certificates/{serial}/revoke",
        json={"reason": "superseded"},
        headers=bearer(security),
    )
    assert again.status_code == 409
    assert again.json()["code"] == "certificate_already_revoked"
    assert again.json()["revocation_reason"] == "keyCompromise"
