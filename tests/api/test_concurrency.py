"""Two collections racing for one download code: exactly one certificate.

Both requests go through the HTTP API at once (TestClient from two threads; the
sync handlers run in the server's thread pool). Each test makes one attempt and
joins its threads with a timeout.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.services import Services
from ca.models import CertificateRecord, CertificateStatus
from issuance.codes import claim_download_code, hash_download_code
from issuance.models import DownloadCode
from tests.helpers import approved_application, bearer, make_csr

PROBLEM_JSON = "application/problem+json"
JOIN_TIMEOUT = 60.0


def _race(
    client: TestClient, reference: str, token: str, code: str, start: threading.Barrier
) -> list[tuple[int, dict[str, Any], str]]:
    """POST two collections with ``code`` from two threads; ``(status, json, content-type)``."""
    results: list[tuple[int, dict[str, Any], str]] = []
    lock = threading.Lock()
    csrs = [make_csr()[1], make_csr()[1]]

    def collect(csr: str) -> None:
        start.wait(timeout=JOIN_TIMEOUT)
        response = client.post(
            f"/api/v1/applications/{reference}/service-locations/1/certificate",
            json={"download_code": code, "csr": csr},
            headers=bearer(token),
        )
        with lock:
            results.append(
                (response.status_code, response.json(), response.headers["content-type"])
            )

    threads = [threading.Thread(target=collect, args=(csr,), daemon=True) for csr in csrs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a collection hung"
    return results


def _assert_one_winner(
    services: Services, reference: str, code: str, results: list[tuple[int, dict[str, Any], str]]
) -> None:
    statuses = sorted(status for status, _body, _type in results)
    assert statuses == [201, 409], results
    winner = next(body for status, body, _type in results if status == 201)
    loser, loser_type = next((body, ctype) for status, body, ctype in results if status == 409)
    assert loser_type == PROBLEM_JSON
    assert loser["code"] == "download_code_used" and loser["status"] == 409
    with services.sessions() as session:
        rows = session.scalars(
            select(CertificateRecord).where(CertificateRecord.provider_reference == reference)
        ).all()
        assert [(r.serial_number, r.status) for r in rows] == [
            (winner["serial_number"], CertificateStatus.ISSUED)
        ]
        code_row = session.scalars(
            select(DownloadCode).where(DownloadCode.code_sha256 == hash_download_code(code))
        ).one()
        assert code_row.used_at is not None and code_row.certificate_id == rows[0].id


def test_simultaneous_collections_with_one_code(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    results = _race(client, reference, token, codes[1], threading.Barrier(2))
    _assert_one_winner(services, reference, codes[1], results)


def test_second_claim_while_the_first_is_uncommitted(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forces the hard interleaving: the second request claims the code while the first
    holds its claim uncommitted. Its conditional UPDATE then waits for the first commit
    (PostgreSQL row lock, SQLite write lock) and matches no row: 409, not a 500."""
    reference, token, codes = approved_application(client, services, samples[2])
    real_claim = claim_download_code
    first_claimed = threading.Event()
    order_lock = threading.Lock()
    callers: list[int] = []

    def claim(session: Any, service_location_id: int, code: str, *, now: Any) -> Any:
        with order_lock:
            callers.append(threading.get_ident())
            first = len(callers) == 1
        if not first:
            first_claimed.wait(timeout=10)
            return real_claim(session, service_location_id, code, now=now)
        row = real_claim(session, service_location_id, code, now=now)
        first_claimed.set()
        time.sleep(0.3)  # keep the claim uncommitted while the other request claims
        return row

    monkeypatch.setattr("issuance.service.claim_download_code", claim)
    results = _race(client, reference, token, codes[1], threading.Barrier(2))
    assert len(callers) == 2
    _assert_one_winner(services, reference, codes[1], results)
