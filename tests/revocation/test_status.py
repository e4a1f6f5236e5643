"""Revocation status in memory, kept in step with the database: the revoking process
marks it at once; another worker (a second :class:`Services` over the same database,
polling every ``STATUS_POLL_SECONDS`` as ``ehrca serve`` does) notices within 1 s.

The poll is the fallback: sibling workers on one host are woken by a notification
first (``api.notify``; tested in ``tests/api/test_notify.py`` with the poll off)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from api.server import STATUS_POLL_SECONDS
from api.services import Services, build_services
from api.settings import Settings
from revocation.service import revoke_provider_certificates
from revocation.status import RevocationStatusCache
from tests.conftest import FrozenClock
from tests.helpers import bearer, officer_token
from tests.revocation.support import issue_client

DEADLINE = 1.0  # seconds: DESIGN.md, "each notices a change within 1 s"


@pytest.fixture
def other_worker(settings: Settings, clock: FrozenClock, services: Services) -> Iterator[Services]:
    """A second worker: its own engine, sessions and status cache, same database."""
    worker = build_services(settings, clock=clock)
    with worker.sessions() as session:
        worker.revocation_status.refresh(session)
    yield worker
    worker.dispose()


def _poll(worker: Services, stop: threading.Event) -> None:
    """The status poll of ``api.server.serve``: refresh every STATUS_POLL_SECONDS."""
    while not stop.wait(STATUS_POLL_SECONDS):
        with worker.sessions() as session:
            worker.revocation_status.refresh(session)


def test_another_worker_notices_a_revocation_within_one_second(
    client: TestClient, services: Services, other_worker: Services
) -> None:
    assert STATUS_POLL_SECONDS == 0.5
    issued = issue_client(services)
    token = officer_token(client, services, "sam", "security_officer")
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(other_worker, stop), daemon=True)
    poller.start()
    try:
        version_before = other_worker.revocation_status.version
        response = client.post(
            f"/api/v1/officer/certificates/{issued.serial_hex}/revoke",
            json={"reason": "keyCompromise"},
            headers=bearer(token),
        )
        answered = time.monotonic()
        assert response.status_code == 200
        # The revoking worker knows at once.
        assert services.revocation_status.is_revoked(issued.record.issuer_id, issued.serial_hex)
        while not other_worker.revocation_status.is_revoked(
            issued.record.issuer_id, issued.serial_hex
        ):
            assert time.monotonic() - answered < DEADLINE, "the other worker did not notice"
            time.sleep(0.01)
        noticed = time.monotonic() - answered
    finally:
        stop.set()
        poller.join(5)
    assert noticed < DEADLINE
    assert other_worker.revocation_status.version == version_before + 1


def test_bulk_revocations_reach_the_other_worker(
    services: Services, other_worker: Services, clock: FrozenClock
) -> None:
    issued = [
        issue_client(services, reference="HCP-STATUS01", location_id=n, number=n) for n in (1, 2, 3)
    ]
    with services.sessions() as session:
        revoke_provider_certificates(
            session,
            "HCP-STATUS01",
            x509.ReasonFlags.cessation_of_operation,
            actor="sam",
            now=clock(),
            context=services.revocation,
        )
    with other_worker.sessions() as session:
        assert other_worker.revocation_status.refresh(session) == 3
        assert other_worker.revocation_status.refresh(session) == 0
    assert all(
        other_worker.revocation_status.is_revoked(i.record.issuer_id, i.serial_hex) for i in issued
    )


def test_cache_starts_empty_and_loads_everything(services: Services, clock: FrozenClock) -> None:
    issued = issue_client(services)
    with services.sessions() as session:
        revoke_provider_certificates(
            session, "HCP-TEST0001", x509.ReasonFlags.superseded, actor="sam", now=clock()
        )
    cache = RevocationStatusCache()
    assert cache.version == 0
    assert not cache.is_revoked(issued.record.issuer_id, issued.serial_hex)
    with services.sessions() as session:
        assert cache.refresh(session) == 1
    assert cache.is_revoked(issued.record.issuer_id, issued.serial_hex)


def test_listeners_hear_each_revocation_once(services: Services, clock: FrozenClock) -> None:
    """mark_revoked and refresh call listeners only for revocations new to the cache."""
    heard: list[tuple[int, str]] = []
    services.revocation_status.add_listener(
        lambda issuer_id, serial: heard.append((issuer_id, serial))
    )
    services.revocation_status.mark_revoked(7, "0a")
    services.revocation_status.mark_revoked(7, "0a")
    assert heard == [(7, "0a")]
