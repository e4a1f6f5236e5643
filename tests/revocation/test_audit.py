"""The audit trail: ``ehrca audit verify`` on an intact chain and after a row was
modified, deleted or two rows swapped (exact seq and problem), the admin listing API,
and no secret (password, download code, private key, passphrase, token) in any event
of a full story."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from api.cli import main
from api.services import Services
from ca.audit import AuditEvent, record_event
from tests.conftest import TEST_PASSPHRASE, FrozenClock
from tests.helpers import (
    APPLICANT_PASSWORD,
    OFFICER_PASSWORD,
    approved_application,
    bearer,
    collect_with_csr,
    login,
    make_csr,
    officer_token,
)

PKCS12_PASSWORD = "another-pkcs12-password-77"


@pytest.fixture
def cli_env(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point ``ehrca`` at the test's database and key store."""
    settings = services.settings
    monkeypatch.setenv("EHRCA_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("EHRCA_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("EHRCA_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("EHRCA_KEY_PASSPHRASE", TEST_PASSPHRASE)


def _events(services: Services, count: int) -> None:
    """Append ``count`` events (``officer.created``, as ``ehrca officer add`` records)."""
    with services.sessions() as session:
        for i in range(count):
            record_event(
                session,
                "officer.created",
                actor="cli",
                now=services.clock(),
                subject=f"officer-{i}",
                details={"role": "reviewer"},
            )
        session.commit()


def _verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["audit", "verify"])
    out = capsys.readouterr()
    return code, out.out.strip(), out.err.strip()


def _execute(services: Services, sql: str, **params: Any) -> None:
    with services.sessions() as session:
        session.execute(text(sql), params)
        session.commit()


@pytest.mark.usefixtures("cli_env")
def test_verify_intact_chain(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    _events(services, 5)
    assert _verify(capsys) == (0, "OK, 7 events", "")  # + the two CA key events of init


@pytest.mark.usefixtures("cli_env")
def test_verify_names_a_modified_row(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(services, 5)
    _execute(services, "UPDATE audit_events SET details = :d WHERE seq = 5", d='{"role":"admin"}')
    assert _verify(capsys) == (1, "", "audit chain broken at seq 5: modified (5 rows read)")


@pytest.mark.usefixtures("cli_env")
def test_verify_names_a_modified_actor(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(services, 3)
    _execute(services, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    assert _verify(capsys)[2] == "audit chain broken at seq 3: modified (3 rows read)"


@pytest.mark.usefixtures("cli_env")
def test_verify_names_a_deleted_row(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    _events(services, 5)
    _execute(services, "DELETE FROM audit_events WHERE seq = 4")
    assert _verify(capsys) == (1, "", "audit chain broken at seq 4: deleted (4 rows read)")


@pytest.mark.usefixtures("cli_env")
def test_verify_names_a_deleted_last_row(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(services, 5)
    _execute(services, "DELETE FROM audit_events WHERE seq = 7")
    assert _verify(capsys) == (1, "", "audit chain broken at seq 7: deleted (6 rows read)")


@pytest.mark.usefixtures("cli_env")
def test_verify_names_swapped_rows(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    _events(services, 5)
    _execute(services, "UPDATE audit_events SET seq = -1 WHERE seq = 4")
    _execute(services, "UPDATE audit_events SET seq = 4 WHERE seq = 5")
    _execute(services, "UPDATE audit_events SET seq = 5 WHERE seq = -1")
    assert _verify(capsys) == (1, "", "audit chain broken at seq 4: reordered (4 rows read)")


# ----------------------------------------------------------------------------- admin API


def test_admin_lists_and_filters_events(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    admin = officer_token(client, services, "ada", "admin")
    clock.advance(hours=1)
    security = officer_token(client, services, "sam", "security_officer")
    url = "/api/v1/admin/audit-events"

    everything = client.get(url, headers=bearer(admin))
    assert everything.status_code == 200
    page = everything.json()
    assert (page["total"], page["limit"], page["offset"]) == (6, 100, 0)
    assert [(e["seq"], e["event_type"], e["actor"], e["subject"]) for e in page["items"]] == [
        (1, "ca.key_created", "cli", "ehrca-root-1"),
        (2, "ca.key_created", "cli", "ehrca-issuing-1"),
        (3, "officer.created", "cli", "ada"),
        (4, "auth.login", "ada", "ada"),
        (5, "officer.created", "cli", "sam"),
        (6, "auth.login", "sam", "sam"),
    ]
    details = page["items"][3]["details"]
    assert (details["kind"], details["role"]) == ("officer", "admin")
    assert page["items"][3]["at"] == "2026-11-29T09:00:00Z"
    assert page["items"][1]["prev_hash"] == page["items"][0]["row_hash"]

    def seqs(**params: str) -> list[int]:
        response = client.get(url, params=params, headers=bearer(admin))
        assert response.status_code == 200, response.text
        return [e["seq"] for e in response.json()["items"]]

    assert seqs(event_type="auth.login") == [4, 6]
    assert seqs(actor="cli", subject="sam") == [5]
    assert seqs(since="2026-11-29T10:00:00Z") == [5, 6]
    assert seqs(until="2026-11-29T18:00:00+08:00") == [1, 2, 3, 4]
    assert seqs(limit="2", offset="1") == [2, 3]
    assert seqs(event_type="nothing") == []

    for params in (
        {"limit": "0"},
        {"offset": "-1"},
        {"since": "yesterday"},
        {"since": "2026-11-29T10:00:00"},
        {"actor": "a\x00b"},
        {"limit": "1001"},
    ):
        bad = client.get(url, params=params, headers=bearer(admin))
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request"), params
    refused = client.get(url, headers=bearer(security))
    assert (refused.status_code, refused.json()["code"]) == (403, "role_not_allowed")
    assert client.get(url).status_code == 401


# ----------------------------------------------------------------------------- secrets


def test_no_secret_in_any_event_of_a_full_story(
    client: TestClient, services: Services, samples: list[dict[str, Any]], clock: FrozenClock
) -> None:
    reference, token, codes = approved_application(client, services, samples[1])
    key, csr = make_csr()
    body = collect_with_csr(client, reference, token, 1, codes[1], csr)
    # Collected certificates point at the OCSP responder (AIA, RFC 5280 4.2.2.1).
    aia = x509.load_pem_x509_certificate(body["certificate_pem"].encode()).extensions
    assert [
        (d.access_method, d.access_location.value)
        for d in aia.get_extension_for_class(x509.AuthorityInformationAccess).value
    ] == [
        (AuthorityInformationAccessOID.OCSP, "http://127.0.0.1:8000/pki/ocsp/ehrca-issuing-1"),
        (
            AuthorityInformationAccessOID.CA_ISSUERS,
            "http://127.0.0.1:8000/pki/ca/ehrca-issuing-1.crt",
        ),
    ]
    p12 = client.post(
        f"/api/v1/applications/{reference}/service-locations/2/certificate",
        json={"download_code": codes[2], "pkcs12_password": PKCS12_PASSWORD},
        headers=bearer(token),
    )
    assert p12.status_code == 201, p12.text
    generated = pkcs12.load_pkcs12(p12.content, PKCS12_PASSWORD.encode()).key
    assert generated is not None
    # A failed login (wrong password) and a reused download code.
    wrong = client.post(
        "/api/v1/auth/token", data={"username": reference, "password": "wrong-password-123"}
    )
    assert wrong.status_code == 401
    client.post(
        f"/api/v1/applications/{reference}/service-locations/1/certificate",
        json={"download_code": codes[1], "csr": csr},
        headers=bearer(token),
    )
    security = officer_token(client, services, "sam", "security_officer")
    revoked = client.post(
        f"/api/v1/officer/certificates/{body['serial_number']}/revoke",
        json={"reason": "keyCompromise"},
        headers=bearer(security),
    )
    assert revoked.status_code == 200
    assert client.post("/api/v1/officer/crl/publish", headers=bearer(security)).status_code == 200
    officer_login = login(client, "sam", OFFICER_PASSWORD)

    with services.sessions() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    types = [e.event_type for e in events]
    for expected in (
        "auth.login",
        "auth.login_failed",
        "certificate.issued",
        "certificate.pkcs12_delivered",
        "certificate.revoked",
        "crl.published",
        "ocsp.responder_key_created",
    ):
        assert expected in types, expected
    published = [
        (e.actor, e.subject, json.loads(e.details))
        for e in events
        if e.event_type == "crl.published"
    ]
    # Root: CRL 1 at init, 2 by hand. Issuing: 1 at init, 2 on the revocation, 3 by hand.
    assert [(a, s, d["crl_number"], d["shard"], d["trigger"]) for a, s, d in published] == [
        ("sam", "ehrca-root-1", 2, None, "manual"),
        ("sam", "ehrca-issuing-1", 3, None, "manual"),
    ]

    def forms(secret: bytes) -> list[str]:
        return [
            secret.decode("latin-1"),
            secret.hex(),
            base64.b64encode(secret).decode(),
        ]

    secrets: list[str] = [
        APPLICANT_PASSWORD,
        OFFICER_PASSWORD,
        PKCS12_PASSWORD,
        "wrong-password-123",
        TEST_PASSPHRASE,
        token,
        security,
        officer_login,
    ]
    for code in codes.values():
        secrets += [code, code.replace("-", "")]
    for private_key in (key, generated):
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        scalar = private_key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
        secrets += forms(der)[1:] + forms(scalar)[1:] + ["PRIVATE KEY"]
    for event in events:
        blob = " ".join((event.actor, event.subject or "", event.details))
        for secret in secrets:
            assert secret not in blob, (event.seq, event.event_type)
