"""``db.session.is_transaction_conflict``: which database errors a retry may cure."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from api.services import Services
from db.session import is_transaction_conflict
from issuance.codes import claim_download_codes, hash_download_code
from issuance.models import DownloadCode
from tests.helpers import approved_application


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_postgresql_deadlock_and_serialization_failure() -> None:
    assert is_transaction_conflict(OperationalError("x", {}, _PgError("40P01"))) is True
    assert is_transaction_conflict(OperationalError("x", {}, _PgError("40001"))) is True
    # unique_violation, lock_not_available, admin shutdown: not cured by a retry here
    assert is_transaction_conflict(IntegrityError("x", {}, _PgError("23505"))) is False
    assert is_transaction_conflict(OperationalError("x", {}, _PgError("55P03"))) is False
    assert is_transaction_conflict(OperationalError("x", {}, _PgError("57P01"))) is False


def test_sqlite_lock_timeout() -> None:
    locked = sqlite3.OperationalError("database is locked")
    assert is_transaction_conflict(OperationalError("x", {}, locked)) is True
    missing = sqlite3.OperationalError("no such table: certificates")
    assert is_transaction_conflict(OperationalError("x", {}, missing)) is False


def test_other_exceptions() -> None:
    assert is_transaction_conflict(RuntimeError("database is locked")) is False
    assert is_transaction_conflict(ValueError("40P01")) is False


def test_a_real_postgresql_deadlock_is_a_transaction_conflict(
    client: TestClient, services: Services, samples: list[dict[str, Any]]
) -> None:
    """Issuance takes its locks in one order (``issuance.batch.lock_order``, one claim
    statement per batch), so the public path no longer crosses two batches; the
    deadlock is forced one level down: two transactions claim the same two codes
    (``issuance.codes.claim_download_codes``) in opposite orders. PostgreSQL aborts one
    with SQLSTATE 40P01, which is the error the retry of ``issuance.batch.collect_batch``
    recognises; the other claims both."""
    if services.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: two transactions cannot cross")
    _reference, _token, codes = approved_application(client, services, samples[1])
    with services.sessions() as session:
        wanted = {
            n: session.execute(
                select(DownloadCode.code_sha256, DownloadCode.service_location_id).where(
                    DownloadCode.code_sha256 == hash_download_code(codes[n])
                )
            ).one()
            for n in (1, 2)
        }
    now = services.clock()
    both_claimed = threading.Barrier(2)
    errors: list[DBAPIError] = []
    claimed: list[list[str]] = []

    def run(first: int, second: int) -> None:
        with services.sessions() as session:
            try:
                got = claim_download_codes(session, [(*wanted[first], now)])
                both_claimed.wait(timeout=10)
                got |= claim_download_codes(session, [(*wanted[second], now)])
                claimed.append(sorted(got))
            except DBAPIError as exc:
                errors.append(exc)
            finally:
                session.rollback()

    threads = [threading.Thread(target=run, args=a, daemon=True) for a in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert len(errors) == 1, errors
    assert getattr(errors[0].orig, "sqlstate", None) == "40P01"
    assert is_transaction_conflict(errors[0]) is True
    assert claimed == [sorted(digest for digest, _ in wanted.values())]
