"""Renewal over mTLS, replacement after a lost key, and expiry notices — through the
HTTP API and the mTLS app, with the frozen clock.

The mTLS app is driven in process: a small ASGI wrapper fills the TLS extension
(``scope["extensions"]["tls"]``) the way the listener's protocol does (api/tls.py), so
``verified_client`` sees the presented certificate; the real TLS layer is covered by
tests/api/test_mtls.py."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_mtls_app
from api.services import Services
from api.tasks import run_tasks
from ca.audit import AuditEvent
from ca.models import CertificateRecord, CertificateStatus
from issuance.models import ExpiryNotice
from revocation.models import Revocation
from tests.conftest import START, FrozenClock
from tests.helpers import (
    approved_application,
    assert_lint_clean,
    bearer,
    body_text,
    collect_with_csr,
    make_csr,
    officer_token,
    outbox_messages,
)

NOT_AFTER = START + dt.timedelta(days=730) - dt.timedelta(seconds=1)
CODE = re.compile(r"[0-9A-Z]{4}(?:-[0-9A-Z]{4}){4}")


class Presented:
    """The certificate the next mTLS request presents (PEM)."""

    pem: str = ""


@pytest.fixture
def mtls(services: Services) -> Iterator[tuple[TestClient, Presented]]:
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


def _record(services: Services, serial: str) -> CertificateRecord:
    with services.sessions() as session:
        return session.scalars(
            select(CertificateRecord).where(CertificateRecord.serial_number == serial)
        ).one()


def _revocation(services: Services, serial: str) -> Revocation | None:
    with services.sessions() as session:
        return session.scalars(select(Revocation).where(Revocation.serial_number == serial)).first()


def _crl_reason(client: TestClient, serial: str) -> x509.ReasonFlags | None:
    crl = x509.load_der_x509_crl(client.get("/pki/crl/ehrca-issuing-1.crl").content)
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    if entry is None:
        return None
    reason: x509.ReasonFlags = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    return reason


# --------------------------------------------------------------------------- renewal


def test_renewal_window_new_certificate_and_superseded_old_one(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    clock: FrozenClock,
    mtls: tuple[TestClient, Presented],
) -> None:
    mtls_client, presented = mtls
    reference, token, codes = approved_application(client, services, samples[1])
    old_key, csr = make_csr()
    old = collect_with_csr(client, reference, token, 2, codes[2], csr)
    presented.pem = old["certificate_pem"]
    assert mtls_client.get("/mtls/whoami").json()["serial_number"] == old["serial_number"]
    new_key, new_csr = make_csr(subject="CN=renewed,O=ignored")

    # Too early: 30 days before notAfter (the default window), to the second.
    opens = NOT_AFTER - dt.timedelta(days=30)
    for now in (START, opens - dt.timedelta(seconds=1)):
        clock.now = now
        early = mtls_client.post("/mtls/renew", json={"csr": new_csr})
        assert early.status_code == 409, early.text
        assert early.json()["code"] == "renewal_too_early"
        assert early.json()["renewal_opens_at"] == "2028-10-29T08:59:59+00:00"
        assert early.json()["detail"] == (
            "renewal opens 30 days before notAfter, at 2028-10-29T08:59:59+00:00"
        )

    clock.now = opens
    same_key = mtls_client.post("/mtls/renew", json={"csr": make_csr(old_key)[1]})
    assert (same_key.status_code, same_key.json()["code"]) == (422, "renewal_key_reused")
    bad = mtls_client.post("/mtls/renew", json={"csr": "not a csr"})
    assert (bad.status_code, bad.json()["code"]) == (400, "csr_malformed")

    renewed = mtls_client.post("/mtls/renew", json={"csr": new_csr})
    assert renewed.status_code == 201, renewed.text
    body = renewed.json()
    assert body["replaces_serial_number"] == old["serial_number"]
    assert body["replaced_revoked"] is True
    assert body["ignored"] == ["subject"]
    assert body["not_valid_before"] == "2028-10-29T08:59:59+00:00"
    assert body["not_valid_after"] == "2030-10-29T08:59:58+00:00"
    old_cert = x509.load_pem_x509_certificate(old["certificate_pem"].encode())
    new_cert = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    assert new_cert.subject == old_cert.subject  # same service location
    assert new_cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ) == old_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert new_cert.public_key() == new_key.public_key()
    assert body["chain_pem"] == old["chain_pem"]
    assert_lint_clean(new_cert.public_bytes(serialization.Encoding.DER))
    assert (
        _record(services, body["serial_number"]).service_location_id
        == _record(services, old["serial_number"]).service_location_id
    )

    # The old certificate is revoked as superseded: in the database, the CRL, and mTLS.
    revocation = _revocation(services, old["serial_number"])
    assert revocation is not None and revocation.revocation_reason == "superseded"
    assert revocation.revoked_by == f"mtls:{old['serial_number']}"
    assert _crl_reason(client, old["serial_number"]) is x509.ReasonFlags.superseded
    again = mtls_client.post("/mtls/renew", json={"csr": make_csr()[1]})
    assert (again.status_code, again.json()["code"]) == (403, "client_certificate_revoked")
    presented.pem = body["certificate_pem"]
    assert mtls_client.get("/mtls/whoami").json()["service_location"] == 2

    with services.sessions() as session:
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.event_type == "certificate.issued",
                AuditEvent.subject == body["serial_number"],
            )
        ).one()
        assert f'"renews":"{old["serial_number"]}"' in event.details

    # No expiry notice for the superseded certificate.
    clock.now = NOT_AFTER - dt.timedelta(days=7)
    assert dict(run_tasks(services, {"certificate.expiry_notices"})) == {
        "certificate.expiry_notices": "queued 0 expiry notices"
    }


def test_renewal_needs_a_client_certificate(
    client: TestClient, services: Services, mtls: tuple[TestClient, Presented]
) -> None:
    mtls_client, presented = mtls
    with services.sessions() as session:
        server = session.scalars(
            select(CertificateRecord).where(CertificateRecord.profile == "mtls_server")
        ).one()
        assert server.certificate_der is not None
        presented.pem = (
            x509.load_der_x509_certificate(server.certificate_der)
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
    refused = mtls_client.post("/mtls/renew", json={"csr": make_csr()[1]})
    assert (refused.status_code, refused.json()["code"]) == (403, "renewal_not_allowed")
    presented.pem = ""
    missing = mtls_client.post("/mtls/renew", json={"csr": make_csr()[1]})
    assert (missing.status_code, missing.json()["code"]) == (403, "client_certificate_missing")


# --------------------------------------------------------------------------- replacement


def _replacement_mail(services: Services, reference: str, number: int) -> str:
    for message in reversed(outbox_messages(services.settings.outbox_dir)):
        if f"replacement download code for service location {number}" in str(message["Subject"]):
            assert reference in str(message["Subject"])
            return body_text(message)
    raise AssertionError("no replacement mail")


def test_lost_key_replacement_code_revokes_on_collection(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[1])
    lost_key, csr = make_csr()
    lost = collect_with_csr(client, reference, token, 1, codes[1], csr)
    url = f"/api/v1/officer/applications/{reference}/service-locations/1/replacement-code"

    reviewer = officer_token(client, services, "rev-replace", "reviewer")
    denied = client.post(url, json={"reason": "keyCompromise"}, headers=bearer(reviewer))
    assert (denied.status_code, denied.json()["code"]) == (403, "role_not_allowed")
    denied = client.post(url, json={"reason": "keyCompromise"}, headers=bearer(token))
    assert denied.status_code == 403

    security = officer_token(client, services, "sec-replace", "security_officer")
    bad = client.post(url, json={"reason": "cACompromise"}, headers=bearer(security))
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    issued = client.post(url, json={"reason": "keyCompromise"}, headers=bearer(security))
    assert issued.status_code == 201, issued.text
    assert issued.json() == {
        "reference": reference,
        "service_location": 1,
        "replaces_serial_number": lost["serial_number"],
        "revocation_reason": "keyCompromise",
        "code_expires_at": "2027-01-28T09:00:00Z",
        "mailed_to": samples[1]["provider"]["email"],
    }
    assert not CODE.search(issued.text)  # nothing secret over HTTP

    text = _replacement_mail(services, reference, 1)
    (code,) = CODE.findall(text)
    assert (
        f"the current one (serial number\n{lost['serial_number']}) is revoked as compromised"
        in text
    )
    # Not revoked yet: the clinic keeps working until the replacement is collected.
    assert _revocation(services, lost["serial_number"]) is None

    new = collect_with_csr(client, reference, token, 1, code, make_csr()[1])
    revocation = _revocation(services, lost["serial_number"])
    assert revocation is not None and revocation.revocation_reason == "keyCompromise"
    assert revocation.revoked_by == "sec-replace (replacement code)"
    assert _crl_reason(client, lost["serial_number"]) is x509.ReasonFlags.key_compromise
    assert _record(services, new["serial_number"]).status is CertificateStatus.ISSUED
    # keyCompromise put the lost key on the block list.
    blocked = client.post(
        f"/api/v1/applications/{reference}/service-locations/2/certificate",
        json={"download_code": codes[2], "csr": make_csr(lost_key)[1]},
        headers=bearer(token),
    )
    assert (blocked.status_code, blocked.json()["code"]) == (422, "csr_key_blocked")
    used = client.post(
        f"/api/v1/applications/{reference}/service-locations/1/certificate",
        json={"download_code": code, "csr": make_csr()[1]},
        headers=bearer(token),
    )
    assert (used.status_code, used.json()["code"]) == (409, "download_code_used")


def test_replacement_code_for_an_uncollected_location_voids_the_old_code(
    client: TestClient, services: Services, samples: list[dict[str, Any]], clock: FrozenClock
) -> None:
    reference, token, codes = approved_application(client, services, samples[1])
    security = officer_token(client, services, "sec-void", "security_officer")
    clock.advance(hours=1)
    issued = client.post(
        f"/api/v1/officer/applications/{reference}/service-locations/3/replacement-code",
        json={},
        headers=bearer(security),
    )
    assert issued.status_code == 201, issued.text
    assert issued.json()["replaces_serial_number"] is None
    assert issued.json()["revocation_reason"] == "superseded"
    old = client.post(
        f"/api/v1/applications/{reference}/service-locations/3/certificate",
        json={"download_code": codes[3], "csr": make_csr()[1]},
        headers=bearer(token),
    )
    assert (old.status_code, old.json()["code"]) == (410, "download_code_expired")
    (code,) = CODE.findall(_replacement_mail(services, reference, 3))
    collect_with_csr(client, reference, token, 3, code, make_csr()[1])
    # Other locations' codes are untouched.
    collect_with_csr(client, reference, token, 2, codes[2], make_csr()[1])


def test_replacement_mail_in_chinese(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])  # zh-Hans
    collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])
    security = officer_token(client, services, "sec-zh", "security_officer")
    issued = client.post(
        f"/api/v1/officer/applications/{reference}/service-locations/1/replacement-code",
        json={"reason": "superseded"},
        headers=bearer(security),
    )
    assert issued.status_code == 201, issued.text
    message = outbox_messages(services.settings.outbox_dir)[-1]
    assert str(message["Subject"]) == f"电子健康记录登记 {reference}：服务地点 1 的替换下载码"
    text = body_text(message)
    assert "原因为已被取代（superseded）" in text and len(CODE.findall(text)) == 1


# --------------------------------------------------------------------------- expiry notices


def _notices(services: Services) -> list[tuple[str, str]]:
    services.deliver_mail()
    return [
        (str(m["To"]), str(m["Subject"]))
        for m in outbox_messages(services.settings.outbox_dir)
        if "到期" in str(m["Subject"]) or "expires in" in str(m["Subject"])
    ]


def _run_notices(services: Services) -> str:
    return dict(run_tasks(services, {"certificate.expiry_notices"}))["certificate.expiry_notices"]


def test_expiry_notices_at_30_14_7_and_1_days_once_each(
    client: TestClient, services: Services, samples: list[dict[str, Any]], clock: FrozenClock
) -> None:
    reference, token, codes = approved_application(client, services, samples[0])  # zh-Hant
    collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])
    assert _run_notices(services) == "queued 0 expiry notices"
    clock.now = NOT_AFTER - dt.timedelta(days=30, seconds=1)
    assert _run_notices(services) == "queued 0 expiry notices"
    expected: list[tuple[str, str]] = []
    for days in (30, 14, 7, 1):
        clock.now = NOT_AFTER - dt.timedelta(days=days)
        assert _run_notices(services) == "queued 1 expiry notices"
        assert _run_notices(services) == "queued 0 expiry notices"  # once each
        expected.append(
            ("clinic@example.org", f"電子健康紀錄安全連接證書 {reference}-L1 將於 {days} 日後到期")
        )
        assert _notices(services) == expected
    clock.now = NOT_AFTER + dt.timedelta(seconds=1)
    assert _run_notices(services) == "queued 0 expiry notices"
    message = outbox_messages(services.settings.outbox_dir)[-1]
    assert "2028-11-28 08:59:59 UTC" in body_text(message)
    assert "POST /mtls/renew" in body_text(message)
    with services.sessions() as session:
        rows = session.scalars(select(ExpiryNotice).order_by(ExpiryNotice.id)).all()
        assert [r.days_before for r in rows] == [30, 14, 7, 1]
        assert all(r.mail_id is not None for r in rows)


def test_expiry_notices_skip_passed_thresholds_and_speak_english(
    client: TestClient, services: Services, samples: list[dict[str, Any]], clock: FrozenClock
) -> None:
    reference, token, codes = approved_application(client, services, samples[1])  # en
    collect_with_csr(client, reference, token, 1, codes[1], make_csr()[1])
    clock.now = NOT_AFTER - dt.timedelta(days=10)  # the task did not run at 30 and 14 days
    assert _run_notices(services) == "queued 1 expiry notices"
    assert _notices(services) == [
        (
            samples[1]["provider"]["email"],
            f"eHR secure connection certificate {reference}-L1 expires in 14 days",
        )
    ]
    with services.sessions() as session:
        rows = session.scalars(select(ExpiryNotice).order_by(ExpiryNotice.days_before)).all()
        assert [(r.days_before, r.mail_id is not None) for r in rows] == [(14, True), (30, False)]
    clock.now = NOT_AFTER - dt.timedelta(hours=2)
    assert _run_notices(services) == "queued 1 expiry notices"
    assert _notices(services)[-1][1].endswith("expires in 1 day")
