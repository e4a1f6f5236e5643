"""Record before signing and idempotent collection, through the HTTP API.

- A crash between the real signature and the store (the sign step made to raise after
  the reservation was committed) leaves a ``reserved`` row with the to-be-signed
  certificate; a security officer revokes it over HTTP and the CRL lists it.
- ``Idempotency-Key``: repeating a CSR collection returns the same certificate, a
  repeat while the first is being signed is refused with 409
  ``idempotency_key_in_progress``, and concurrent repeats never make a second
  certificate.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asn1crypto.x509
import httpx
import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.services import Services
from ca import service as ca_service
from ca.models import CertificateRecord, CertificateStatus
from ca.service import stale_reservations
from tests.helpers import (
    approved_application,
    bearer,
    body_text,
    make_csr,
    officer_token,
    outbox_messages,
)

CODE = re.compile(r"[0-9A-Z]{4}(?:-[0-9A-Z]{4}){4}")


def _post(
    client: TestClient,
    reference: str,
    token: str,
    number: int,
    body: dict[str, Any],
    key: str | None,
) -> httpx.Response:
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    response: httpx.Response = client.post(
        f"/api/v1/applications/{reference}/service-locations/{number}/certificate",
        json=body,
        headers=headers,
    )
    return response


def _certificates(services: Services, number_of_location: int) -> list[CertificateRecord]:
    with services.sessions() as session:
        return list(
            session.scalars(
                select(CertificateRecord)
                .where(CertificateRecord.profile == "client")
                .order_by(CertificateRecord.id)
            )
        )


def test_crash_after_reservation_leaves_a_revocable_row(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, token, codes = approved_application(client, services, samples[0])

    def crash(builder: x509.CertificateBuilder, key: object) -> x509.Certificate:
        raise RuntimeError("the process died while signing")

    monkeypatch.setattr(ca_service, "sign_reserved_certificate", crash)
    crashed = _post(
        client, reference, token, 1, {"download_code": codes[1], "csr": make_csr()[1]}, None
    )
    assert crashed.status_code == 500
    assert crashed.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "an unexpected error occurred",
        "code": "internal_error",
    }
    monkeypatch.undo()

    with services.sessions() as session:
        (row,) = stale_reservations(session, before=services.clock() + dt.timedelta(seconds=1))
        assert (row.status, row.certificate_der, row.profile) == (
            CertificateStatus.RESERVED,
            None,
            "client",
        )
        tbs = asn1crypto.x509.TbsCertificate.load(row.tbs_certificate_der)
        assert format(tbs["serial_number"].native, "040x") == row.serial_number
        assert tbs["subject"].native["common_name"] == f"{reference}-L1"
        serial = row.serial_number
    # Not downloadable: it was never stored as signed.
    assert client.get(f"/api/v1/certificates/{serial}").status_code == 404

    security = officer_token(client, services, "sec-crash", "security_officer")
    revoked = client.post(
        f"/api/v1/officer/certificates/{serial}/revoke",
        json={"reason": "cessationOfOperation"},
        headers=bearer(security),
    )
    assert revoked.status_code == 200, revoked.text
    crl = x509.load_der_x509_crl(client.get("/pki/crl/ehrca-issuing-1.crl").content)
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None

    # The claimed code went with the reservation; a replacement code lets the clinic
    # collect again (nothing left to revoke: the reserved row is revoked already).
    reused = _post(
        client, reference, token, 1, {"download_code": codes[1], "csr": make_csr()[1]}, None
    )
    assert (reused.status_code, reused.json()["code"]) == (409, "download_code_used")
    replaced = client.post(
        f"/api/v1/officer/applications/{reference}/service-locations/1/replacement-code",
        json={},
        headers=bearer(security),
    )
    assert replaced.status_code == 201 and replaced.json()["replaces_serial_number"] is None
    (code,) = CODE.findall(body_text(outbox_messages(services.settings.outbox_dir)[-1]))
    again = _post(client, reference, token, 1, {"download_code": code, "csr": make_csr()[1]}, None)
    assert again.status_code == 201, again.text


def test_repeating_a_collection_returns_the_same_certificate(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[1])
    key, csr = make_csr()
    body = {"download_code": codes[1], "csr": csr}
    first = _post(client, reference, token, 1, body, "collect-l1-attempt-1")
    assert first.status_code == 201, first.text
    second = _post(client, reference, token, 1, body, "collect-l1-attempt-1")
    assert second.status_code == 201, second.text
    assert second.json()["serial_number"] == first.json()["serial_number"]
    assert second.json()["certificate_pem"] == first.json()["certificate_pem"]
    assert second.json()["chain_pem"] == first.json()["chain_pem"]
    # The same key in another CSR encoding (another subject) is the same request.
    third = _post(
        client,
        reference,
        token,
        1,
        {**body, "csr": make_csr(key, subject="x")[1]},
        "collect-l1-attempt-1",
    )
    assert third.json()["serial_number"] == first.json()["serial_number"]
    # Another key under the same Idempotency-Key is a conflict, not a second certificate.
    other = _post(
        client, reference, token, 1, {**body, "csr": make_csr()[1]}, "collect-l1-attempt-1"
    )
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    # Without the key, the used code is refused.
    plain = _post(client, reference, token, 1, body, None)
    assert (plain.status_code, plain.json()["code"]) == (409, "download_code_used")
    # The key is scoped to the location: on location 2 it starts a new collection.
    l2 = _post(
        client, reference, token, 2, {"download_code": codes[2], "csr": csr}, "collect-l1-attempt-1"
    )
    assert l2.status_code == 201 and l2.json()["serial_number"] != first.json()["serial_number"]
    assert len(_certificates(services, 1)) == 2
    # A PKCS#12 download cannot be replayed (its key was never stored).
    p12 = {"download_code": codes[3], "pkcs12_password": "clinic-password-2026"}
    assert _post(client, reference, token, 3, p12, "p12-once").status_code == 201
    replay = _post(client, reference, token, 3, p12, "p12-once")
    assert (replay.status_code, replay.json()["code"]) == (409, "idempotency_key_reused")


def test_repeat_while_the_first_is_signing_is_409_then_the_same_certificate(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, token, codes = approved_application(client, services, samples[0])
    body = {"download_code": codes[1], "csr": make_csr()[1]}
    reserved, release = threading.Event(), threading.Event()
    real_sign: Callable[..., x509.Certificate] = ca_service.sign_reserved_certificate

    def paused_sign(builder: x509.CertificateBuilder, key: Any) -> x509.Certificate:
        reserved.set()  # the reservation is committed: intent recorded
        assert release.wait(10)
        return real_sign(builder, key)

    monkeypatch.setattr(ca_service, "sign_reserved_certificate", paused_sign)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_post, client, reference, token, 1, body, "k-42")
        assert reserved.wait(10)
        during = _post(client, reference, token, 1, body, "k-42")
        assert during.status_code == 409, during.text
        assert during.json()["code"] == "idempotency_key_in_progress"
        release.set()
        done = first.result(timeout=10)
    assert done.status_code == 201, done.text
    after = _post(client, reference, token, 1, body, "k-42")
    assert (
        after.status_code == 201 and after.json()["serial_number"] == done.json()["serial_number"]
    )
    assert len(_certificates(services, 1)) == 1


def test_concurrent_repeats_make_one_certificate(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    body = {"download_code": codes[1], "csr": make_csr()[1]}
    start = threading.Barrier(4)

    def attempt() -> httpx.Response:
        start.wait(10)
        return _post(client, reference, token, 1, body, "same-key")

    with ThreadPoolExecutor(4) as pool:
        responses = [f.result(timeout=30) for f in [pool.submit(attempt) for _ in range(4)]]
    outcomes = {(r.status_code, r.json().get("code")) for r in responses}
    assert outcomes <= {(201, None), (409, "idempotency_key_in_progress")}, [
        r.text for r in responses
    ]
    serials = {r.json()["serial_number"] for r in responses if r.status_code == 201}
    assert len(serials) <= 1
    final = _post(client, reference, token, 1, body, "same-key")
    assert final.status_code == 201
    assert serials <= {final.json()["serial_number"]}
    with services.sessions() as session:
        count = session.scalar(
            select(func.count())
            .select_from(CertificateRecord)
            .where(CertificateRecord.profile == "client")
        )
    assert count == 1
