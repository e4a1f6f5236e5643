"""``db.session.is_transaction_conflict``: which database errors a retry may cure."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import IntegrityError, OperationalError

from db.session import is_transaction_conflict


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
