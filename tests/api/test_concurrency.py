"""Two collections racing for one download code: exactly one certificate. Batches of
collections whose transactions conflict (deadlock, serialization failure): retried,
else 503 ``database_busy`` with ``Retry-After`` and nothing kept; never a 500.

Both requests go through the HTTP API at once (TestClient from two threads; the
sync handlers run in the server's thread pool). Each test makes one attempt and
joins its threads with a timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from api.app import create_app
from api.collector import CSRCollector
from api.services import Services
from ca.audit import verify_chain
from ca.models import CertificateRecord, CertificateStatus
from ca.service import stale_reservations
from issuance.batch import ALONE_ATTEMPTS, BATCH_ATTEMPTS, STORE_ATTEMPTS
from issuance.codes import claim_download_code, claim_download_codes, hash_download_code
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
    (PostgreSQL row lock, SQLite write lock) and matches no row: 409, not a 500. The
    second claim is the second batch's claim of distinct codes or, when both requests
    joined one batch, the claim of the repeated code alone."""
    reference, token, codes = approved_application(client, services, samples[2])
    real_claims = claim_download_codes
    real_claim = claim_download_code
    first_claimed = threading.Event()
    order_lock = threading.Lock()
    callers: list[str] = []

    def claims(session: Any, wanted: list[tuple[str, int, Any]]) -> Any:
        with order_lock:
            callers.append("batch")
            first = len(callers) == 1
        if not first:
            first_claimed.wait(timeout=10)
            return real_claims(session, wanted)
        rows = real_claims(session, wanted)
        first_claimed.set()
        time.sleep(0.3)  # keep the claim uncommitted while the other request claims
        return rows

    def claim(session: Any, service_location_id: int, code: str, *, now: Any) -> Any:
        with order_lock:
            callers.append("alone")
        first_claimed.wait(timeout=10)
        return real_claim(session, service_location_id, code, now=now)

    monkeypatch.setattr("issuance.codes.claim_download_codes", claims)
    monkeypatch.setattr("issuance.service.claim_download_code", claim)
    results = _race(client, reference, token, codes[1], threading.Barrier(2))
    # Two batches: the second's claim matches nothing, its code alone then says why.
    assert callers in (["batch", "batch", "alone"], ["batch", "alone"])
    _assert_one_winner(services, reference, codes[1], results)


# -- transaction conflicts in the group commit (issuance.batch.collect_batch) -----------


class _Conflict(Exception):
    """A driver error carrying PostgreSQL's SQLSTATE 40P01 (deadlock_detected)."""

    sqlstate = "40P01"


def _deadlock() -> OperationalError:
    return OperationalError("UPDATE download_codes ...", {}, _Conflict("deadlock detected"))


def _collect(
    client: TestClient, reference: str, token: str, number: int, code: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = client.post(
        f"/api/v1/applications/{reference}/service-locations/{number}/certificate",
        json={"download_code": code, "csr": make_csr()[1]},
        headers=bearer(token),
    )
    return response.status_code, response.json(), dict(response.headers)


def _rows(services: Services, reference: str) -> list[tuple[CertificateStatus, str | None]]:
    with services.sessions() as session:
        return [
            (row.status, row.idempotency_key)
            for row in session.scalars(
                select(CertificateRecord)
                .where(CertificateRecord.provider_reference == reference)
                .order_by(CertificateRecord.id)
            )
        ]


def _code_state(services: Services, code: str) -> tuple[bool, int | None]:
    """``(used, linked certificate id)`` of the stored code."""
    with services.sessions() as session:
        row = session.scalars(
            select(DownloadCode).where(DownloadCode.code_sha256 == hash_download_code(code))
        ).one()
        return row.used_at is not None, row.certificate_id


def test_crossed_batches_deadlock_on_postgresql_and_nobody_gets_a_500(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two workers (two apps, two collectors, two batch threads) each batch two
    collections of the same two codes. The public path claims a batch's codes in one
    statement in the normalised codes' hash order (``issuance.batch.lock_order``: a
    leading dash no longer changes it), so the test crosses the batches itself, one
    level down: each batch thread's first claim takes one code alone (the first and
    the second batch thread opposite ones), waits for the other batch to take its own,
    then claims the other code: a lock cycle PostgreSQL breaks by aborting one
    transaction (40P01). The aborted batch is run again: one worker issues both
    certificates, the other answers 409 twice."""
    if services.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: the batches cannot cross")
    reference, token, codes = approved_application(client, services, samples[1])
    x, y = codes[1], codes[2]
    real_claims = claim_download_codes
    both_claimed = threading.Barrier(2)
    waited: list[int] = []
    order_lock = threading.Lock()

    def claims(session: Any, wanted: list[tuple[str, int, Any]]) -> Any:
        with order_lock:
            crossing = threading.get_ident() not in waited  # each thread's first batch
            if crossing:
                waited.append(threading.get_ident())
                second = len(waited) == 2
        if not crossing or len(wanted) < 2:
            return real_claims(session, wanted)
        ordered = sorted(wanted, reverse=second)
        got = dict(real_claims(session, ordered[:1]))
        both_claimed.wait(timeout=10)
        got.update(real_claims(session, ordered[1:]))
        return got

    real_drain = CSRCollector._drain

    async def gathered_drain(self: CSRCollector, queue: Any) -> None:
        await asyncio.sleep(0.5)  # both of this worker's requests join one batch
        await real_drain(self, queue)

    monkeypatch.setattr("issuance.codes.claim_download_codes", claims)
    monkeypatch.setattr(CSRCollector, "_drain", gathered_drain)
    caplog.set_level(logging.WARNING, logger="ehrca.issuance")
    results: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    lock = threading.Lock()
    with TestClient(create_app(services), raise_server_exceptions=False) as other:
        requests = [
            (client, 1, "-" + x),  # a leading dash: the same code, the same order
            (client, 2, y),
            (other, 1, x),
            (other, 2, "-" + y),
        ]
        start = threading.Barrier(len(requests))

        def run(worker: TestClient, number: int, code: str) -> None:
            start.wait(timeout=JOIN_TIMEOUT)
            outcome = _collect(worker, reference, token, number, code)
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=run, args=r, daemon=True) for r in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=JOIN_TIMEOUT)
        assert not any(thread.is_alive() for thread in threads), "a collection hung"
    assert any(
        r.name == "ehrca.issuance" and "transaction conflict" in r.getMessage()
        for r in caplog.records
    ), "the batches did not deadlock"
    assert sorted(status for status, _, _ in results) == [201, 201, 409, 409], results
    assert sorted(body["code"] for status, body, _ in results if status == 409) == [
        "download_code_used",
        "download_code_used",
    ]
    assert _rows(services, reference) == [
        (CertificateStatus.ISSUED, None),
        (CertificateStatus.ISSUED, None),
    ]
    with services.sessions() as session:
        issued = {
            row.serial_number: row.id
            for row in session.scalars(
                select(CertificateRecord).where(CertificateRecord.provider_reference == reference)
            )
        }
        assert verify_chain(session).ok
    winners = {body["serial_number"] for status, body, _ in results if status == 201}
    assert winners == set(issued)
    assert sorted([_code_state(services, x), _code_state(services, y)]) == sorted(
        (True, record_id) for record_id in issued.values()
    )


def test_a_conflict_on_the_first_attempt_is_retried(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    real_claims = claim_download_codes
    calls: list[list[str]] = []

    def claims(session: Any, wanted: list[tuple[str, int, Any]]) -> Any:
        calls.append([digest for digest, _, _ in wanted])
        if len(calls) == 1:
            raise _deadlock()
        return real_claims(session, wanted)

    monkeypatch.setattr("issuance.codes.claim_download_codes", claims)
    status, body, _ = _collect(client, reference, token, 1, codes[1])
    assert status == 201, body
    assert calls == [[hash_download_code(codes[1])]] * 2
    assert _rows(services, reference) == [(CertificateStatus.ISSUED, None)]
    with services.sessions() as session:
        record_id = session.scalars(
            select(CertificateRecord.id).where(
                CertificateRecord.serial_number == body["serial_number"]
            )
        ).one()
    assert _code_state(services, codes[1]) == (True, record_id)


def test_a_reservation_that_keeps_conflicting_is_a_503_with_nothing_kept(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference, token, codes = approved_application(client, services, samples[2])
    calls: list[list[str]] = []

    def claims(_session: Any, wanted: list[tuple[str, int, Any]]) -> Any:
        calls.append([digest for digest, _, _ in wanted])
        raise _deadlock()

    monkeypatch.setattr("issuance.codes.claim_download_codes", claims)
    status, body, headers = _collect(client, reference, token, 1, codes[1])
    assert (status, headers["content-type"], headers["retry-after"]) == (
        503,
        PROBLEM_JSON,
        "1",
    )
    assert (body["code"], body["status"], body["retry_after"]) == ("database_busy", 503, 1)
    # A batch of one: BATCH_ATTEMPTS whole, then ALONE_ATTEMPTS alone.
    assert calls == [[hash_download_code(codes[1])]] * (BATCH_ATTEMPTS + ALONE_ATTEMPTS)
    assert _rows(services, reference) == []
    assert _code_state(services, codes[1]) == (False, None)
    monkeypatch.undo()
    status, body, _ = _collect(client, reference, token, 1, codes[1])
    assert status == 201, body


def test_a_store_that_keeps_conflicting_releases_the_code_and_key(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reservation is committed and signed, but storing it never gets through: 503;
    the code is unused again and the Idempotency-Key free, the row stays ``reserved``
    (revocable: ``stale_reservations``), and the same request then succeeds."""
    reference, token, codes = approved_application(client, services, samples[2])
    stores: list[int] = []

    def store(_session: Any, stored: list[dict[str, object]], _events: Any) -> None:
        stores.append(len(stored))
        raise _deadlock()

    monkeypatch.setattr("issuance.batch._store_all", store)
    url = f"/api/v1/applications/{reference}/service-locations/1/certificate"
    headers = {**bearer(token), "Idempotency-Key": "k-1"}
    csr = make_csr()[1]
    first = client.post(url, json={"download_code": codes[1], "csr": csr}, headers=headers)
    assert (first.status_code, first.json()["code"], first.headers["retry-after"]) == (
        503,
        "database_busy",
        "1",
    )
    assert stores == [1] * STORE_ATTEMPTS
    assert _rows(services, reference) == [(CertificateStatus.RESERVED, None)]
    assert _code_state(services, codes[1]) == (False, None)
    monkeypatch.undo()
    again = client.post(url, json={"download_code": codes[1], "csr": csr}, headers=headers)
    assert again.status_code == 201, again.text
    assert [status for status, _ in _rows(services, reference)] == [
        CertificateStatus.RESERVED,
        CertificateStatus.ISSUED,
    ]
    with services.sessions() as session:
        stale = stale_reservations(session, before=services.clock() + dt.timedelta(seconds=1))
        assert [row.provider_reference for row in stale] == [reference]


def test_a_conflict_escaping_anywhere_is_a_503_not_a_500(
    client: TestClient,
    services: Services,
    samples: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last line (``api.errors``): a transaction conflict that reaches the handler of
    unexpected errors, from any route, is 503 ``database_busy`` with ``Retry-After``."""
    reference, token, codes = approved_application(client, services, samples[2])

    def conflicted(*_args: Any) -> Any:
        raise _deadlock()

    monkeypatch.setattr("api.collector.collect_batch", conflicted)
    status, body, headers = _collect(client, reference, token, 1, codes[1])
    assert (status, body["code"], body["retry_after"], headers["retry-after"]) == (
        503,
        "database_busy",
        1,
        "1",
    )
    assert headers["content-type"] == PROBLEM_JSON
    assert _rows(services, reference) == []
